/**
 * jest: the model with a scripted source and fake timers, the request code against a real
 * `jupyter server` with the kernel_sessions extension (started by test/server.js).
 */
// ES-module packages jest must compile too
const esModules = [
  '@jupyterlab/',
  '@jupyter/',
  'lib0',
  'nanoid',
  'y-protocols',
  'yjs'
].join('|');

module.exports = {
  testEnvironment: 'node',
  testMatch: ['<rootDir>/test/**/*.spec.ts'],
  transform: {
    '^.+\\.[jt]sx?$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }]
  },
  transformIgnorePatterns: [`/node_modules/(?!(${esModules}))`],
  globalSetup: '<rootDir>/test/global-setup.js',
  globalTeardown: '<rootDir>/test/global-teardown.js',
  testTimeout: 60000
};
