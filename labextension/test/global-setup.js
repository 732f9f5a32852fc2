const { start } = require('./server');

module.exports = async function globalSetup() {
  const server = await start();
  globalThis.__KS_SERVER__ = server;
  // the test workers inherit the environment
  process.env.KS_TEST_URL = server.url;
  process.env.KS_TEST_TOKEN = server.token;
};
