const { stop } = require('./server');

module.exports = async function globalTeardown() {
  await stop(globalThis.__KS_SERVER__);
};
