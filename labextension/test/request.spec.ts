/**
 * The request code against a real jupyter_server with the kernel_sessions extension.
 */
import * as fs from 'fs';
import * as path from 'path';

import { ServerConnection } from '@jupyterlab/services';

import {
  ApiError,
  KernelSessionsClient,
  errorFromResponse
} from '../src/request';
import type { IVariableListing } from '../src/types';

const SPEC = fs.readFileSync(
  path.join(__dirname, '..', '..', 'kernel_sessions', 'server', 'api.yaml'),
  'utf8'
);
/** Checkpoint endpoints are tested once the API document has them. */
const itWithCheckpoints = SPEC.includes('/sessions/{name}/checkpoints:')
  ? it
  : it.skip;

function client(baseUrl = process.env.KS_TEST_URL ?? ''): KernelSessionsClient {
  return new KernelSessionsClient(
    ServerConnection.makeSettings({
      baseUrl,
      wsUrl: baseUrl.replace(/^http/, 'ws'),
      token: process.env.KS_TEST_TOKEN ?? '',
      appendToken: true
    })
  );
}

async function rejection(promise: Promise<unknown>): Promise<ApiError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ApiError);
    return error as ApiError;
  }
  throw new Error('expected the request to fail');
}

async function execute(
  c: KernelSessionsClient,
  name: string,
  code: string
): Promise<void> {
  const result = await c.call<{ status: string }>(
    'POST',
    ['sessions', name, 'execute'],
    { code }
  );
  expect(result.status).toBe('ok');
}

describe('KernelSessionsClient against a real server', () => {
  const c = client();
  const created: string[] = [];

  afterAll(async () => {
    for (const name of created) {
      await c.deleteSession(name).catch(() => undefined);
    }
  });

  it('creates, lists, reads and deletes a session', async () => {
    const session = await c.createSession({ name: 'jest-a' });
    created.push('jest-a');
    expect(session.name).toBe('jest-a');
    expect(session.state).toBe('idle');
    expect(session.kernel.name).toBe('python3');
    expect(session.kernel.id).toBeTruthy();
    expect((await c.listSessions()).map(s => s.name)).toContain('jest-a');
    expect((await c.getSession('jest-a')).kernel.id).toBe(session.kernel.id);

    await expect(c.deleteSession('jest-a')).resolves.toBeUndefined();
    const gone = await rejection(c.getSession('jest-a'));
    expect(gone.status).toBe(404);
    expect(gone.reason).toBe('not_found');
  });

  it("turns the API's {message, reason} into an ApiError", async () => {
    const bad = await rejection(c.createSession({ name: 'Not A Name' }));
    expect(bad.status).toBe(400);
    expect(bad.reason).toBe('invalid_name');
    expect(bad.message).toContain('[a-z0-9]');

    await c.createSession({ name: 'jest-dup' });
    created.push('jest-dup');
    const taken = await rejection(c.createSession({ name: 'jest-dup' }));
    expect(taken.status).toBe(409);
    expect(taken.reason).toBe('exists');
  });

  it('encodes names in URLs', async () => {
    const error = await rejection(c.getSession('a b?c#d'));
    // one path segment that fails the naming rule, not a different route
    expect(error.status).toBe(400);
    expect(error.reason).toBe('invalid_name');
    expect(c.url('sessions', 'a b?c#d')).toMatch(/sessions\/a%20b%3Fc%23d$/);
  });

  it('lists the variables of a session', async () => {
    await c.createSession({ name: 'jest-vars' });
    created.push('jest-vars');
    await execute(c, 'jest-vars', 'x = 41 + 1\nnames = ["a", "b"]');
    const listing: IVariableListing = await c.listVariables('jest-vars');
    const x = listing.variables.find(v => v.name === 'x');
    expect(x?.type).toBe('int');
    expect(x?.preview).toBe('42');
    expect(listing.variables.find(v => v.name === 'names')?.len).toBe(2);
    expect(listing.stale).toBe(false);
  });

  it('reads the pool', async () => {
    const pool = await c.getPool();
    expect(pool.pools['python3'].target).toBe(1);
    expect(typeof pool.pools['python3'].ready).toBe('number');
  });

  it('restarts a session (the namespace is emptied)', async () => {
    await c.createSession({ name: 'jest-restart' });
    created.push('jest-restart');
    await execute(c, 'jest-restart', 'y = 1');
    const restarted = await c.restartSession('jest-restart');
    expect(restarted.restarts).toBe(1);
    const listing = await c.listVariables('jest-restart');
    expect(listing.variables.map(v => v.name)).not.toContain('y');
  });

  itWithCheckpoints('checkpoints, restores, forks and deletes', async () => {
    await c.createSession({ name: 'jest-cp' });
    created.push('jest-cp', 'jest-cp-fork');
    await execute(c, 'jest-cp', 'x = 41 + 1');
    const detail = await c.createCheckpoint('jest-cp', { label: 'answer' });
    expect(detail.label).toBe('answer');
    expect(detail.variables.map(v => v.name)).toContain('x');
    const list = await c.listCheckpoints('jest-cp');
    expect(list[0].id).toBe(detail.id);
    expect(list[0].variable_count).toBe(detail.variable_count);

    await execute(c, 'jest-cp', 'del x\nlater = 1');
    const restored = await c.restoreCheckpoint('jest-cp', detail.id);
    expect(restored.session.name).toBe('jest-cp');
    expect(restored.restored).toContain('x');
    expect(restored.removed).toContain('later');
    expect(restored.failed).toEqual([]);
    const back = await c.listVariables('jest-cp');
    expect(back.variables.find(v => v.name === 'x')?.preview).toBe('42');

    const fork = await c.restoreCheckpoint('jest-cp', detail.id, {
      into: 'jest-cp-fork'
    });
    expect(fork.session.name).toBe('jest-cp-fork');
    expect(fork.restored).toContain('x');
    const forked = await c.listVariables('jest-cp-fork');
    expect(forked.variables.find(v => v.name === 'x')?.preview).toBe('42');

    await c.deleteCheckpoint('jest-cp', detail.id);
    expect((await c.listCheckpoints('jest-cp')).map(cp => cp.id)).not.toContain(
      detail.id
    );
    const missing = await rejection(c.deleteCheckpoint('jest-cp', detail.id));
    expect(missing.status).toBe(404);
  });

  it('reports an unreachable server as a network error', async () => {
    const error = await rejection(client('http://127.0.0.1:9/').listSessions());
    expect(error.reason).toBe('network');
    expect(error.status).toBe(0);
    expect(error.message).toMatch(/^Cannot reach the server/);
  });

  it('reports a refused token with the server message', async () => {
    const anonymous = new KernelSessionsClient(
      ServerConnection.makeSettings({
        baseUrl: process.env.KS_TEST_URL,
        token: ''
      })
    );
    const error = await rejection(anonymous.listSessions());
    expect(error.status).toBe(403);
    expect(error.message).toBeTruthy();
  });
});

describe('errorFromResponse', () => {
  it('uses the message and reason of a JSON error', () => {
    const e = errorFromResponse(
      { status: 409, statusText: 'Conflict' },
      { message: 'busy', reason: 'busy' },
      ''
    );
    expect([e.message, e.reason, e.status]).toEqual(['busy', 'busy', 409]);
  });

  it('falls back to the status for HTML or empty bodies', () => {
    const html = errorFromResponse(
      { status: 502, statusText: 'Bad Gateway' },
      undefined,
      '<html>…</html>'
    );
    expect(html.message).toBe('502 Bad Gateway');
    expect(html.reason).toBe('http_502');
    const text = errorFromResponse(
      { status: 500, statusText: '' },
      undefined,
      'oops'
    );
    expect(text.message).toBe('500 error: oops');
  });
});

describe('KernelSessionsClient paths', () => {
  it('refuses ".", "..", empty and "/" names or ids before building a URL', async () => {
    const c = client('http://127.0.0.1:9/');
    for (const bad of ['.', '..', '', 'a/b', '/', '../etl', 'x/..']) {
      expect(() => c.url('sessions', 'etl', 'variables', bad)).toThrow(
        'not a valid name or id'
      );
      expect(() => c.url('sessions', bad)).toThrow('not a valid name or id');
    }
    expect(c.url('sessions', 'etl', 'variables', '...')).toContain(
      '/variables/...'
    );
    // nothing is sent: a request to port 9 would fail as a network ApiError instead
    for (const call of [
      () => c.deleteCheckpoint('etl', '..'),
      () => c.restoreCheckpoint('etl', '.'),
      () => c.deleteSession('.'),
      () => c.deleteSession('..'),
      () => c.getSession(''),
      () => c.listVariables('a/b')
    ]) {
      const error = await call().then(
        () => undefined,
        (e: unknown) => e
      );
      expect(error).toBeInstanceOf(Error);
      expect(error).not.toBeInstanceOf(ApiError);
      expect((error as Error).message).toContain('not a valid name or id');
    }
  });
});
