/**
 * A real `jupyter server` with the kernel_sessions extension, for the request tests.
 *
 * Python: $KS_PYTHON, else ../.venv/bin/python, else python3. Everything it writes (data,
 * runtime, config, root dir) goes to a temporary directory removed on stop; its session kernels
 * stop with it.
 */
const { spawn } = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

const REPO = path.resolve(__dirname, '..', '..');
const START_TIMEOUT_MS = 90000;

function python() {
  if (process.env.KS_PYTHON) {
    return process.env.KS_PYTHON;
  }
  const venv = path.join(REPO, '.venv', 'bin', 'python');
  return fs.existsSync(venv) ? venv : 'python3';
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitUntilUp(url, token, child, log) {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(
        `jupyter server exited (${child.exitCode}):\n${fs.readFileSync(log, 'utf8')}`
      );
    }
    try {
      const r = await fetch(`${url}api/kernel-sessions/pool`, {
        headers: { Authorization: `token ${token}` }
      });
      if (r.ok) {
        return;
      }
    } catch {
      // not listening yet
    }
    await new Promise(resolve => setTimeout(resolve, 250));
  }
  throw new Error(
    `jupyter server did not answer in ${START_TIMEOUT_MS} ms:\n${fs.readFileSync(log, 'utf8')}`
  );
}

async function start() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ks-jest-'));
  const dirs = {};
  for (const d of ['root', 'data', 'runtime', 'config', 'sessions']) {
    dirs[d] = path.join(tmp, d);
    fs.mkdirSync(dirs[d]);
  }
  const config = {
    ServerApp: {
      jpserver_extensions: { kernel_sessions: true },
      open_browser: false,
      root_dir: dirs.root
    },
    PoolMixin: { pool_sizes: { python3: 1 } },
    KernelSessionsApp: { session_data_dir: dirs.sessions },
    KernelSessionManager: { keep_kernels_on_stop: false }
  };
  fs.writeFileSync(
    path.join(dirs.config, 'jupyter_server_config.json'),
    JSON.stringify(config)
  );
  const port = await freePort();
  const token = crypto.randomBytes(16).toString('hex');
  const log = path.join(tmp, 'server.log');
  const args = [
    '-m',
    'jupyter_server',
    `--port=${port}`,
    '--ip=127.0.0.1',
    `--IdentityProvider.token=${token}`
  ];
  if (process.getuid && process.getuid() === 0) {
    args.push('--allow-root');
  }
  const out = fs.openSync(log, 'w');
  const child = spawn(python(), args, {
    cwd: dirs.root,
    env: {
      ...process.env,
      JUPYTER_DATA_DIR: dirs.data,
      JUPYTER_RUNTIME_DIR: dirs.runtime,
      JUPYTER_CONFIG_DIR: dirs.config
    },
    stdio: ['ignore', out, out]
  });
  const url = `http://127.0.0.1:${port}/`;
  try {
    await waitUntilUp(url, token, child, log);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  return { child, url, token, tmp, log };
}

async function stop(server) {
  if (!server) {
    return;
  }
  const { child, tmp } = server;
  if (child.exitCode === null) {
    const exited = new Promise(resolve => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15000);
    await exited;
    clearTimeout(timer);
  }
  fs.rmSync(tmp, { recursive: true, force: true });
}

module.exports = { start, stop, REPO };
