/**
 * The panel model: refresh throttling, events, details, errors — with a scripted source
 * (counting its calls) and fake timers.
 */
import { Signal } from '@lumino/signaling';

import { SessionsModel, asStateEvent } from '../src/model';
import type { IEmission, ISessionsSource } from '../src/model';
import type {
  ICheckpoint,
  IPool,
  ISession,
  IVariableListing,
  SessionState
} from '../src/types';
import { POOL_SCHEMA_ID, STATE_SCHEMA_ID } from '../src/types';

function session(name: string, state: SessionState = 'idle'): ISession {
  return {
    name,
    kernel: {
      id: `k-${name}`,
      name: 'python3',
      execution_state: state,
      connections: 0,
      pid: null
    },
    state,
    reason: 'created',
    created: '2024-01-01T00:00:00Z',
    last_activity: null,
    restarts: 0,
    owner: null,
    lease_expires: null,
    ttl: null,
    tags: {},
    memory_rss: 50 << 20,
    notebooks: [],
    last_checkpoint: null
  };
}

const POOL: IPool = {
  pools: {
    python3: {
      target: 2,
      ready: 2,
      starting: 0,
      hits: 3,
      misses: 1,
      hit_rate: 0.75,
      acquire_p50_ms: 1.2,
      refills: 3,
      replaced: 0
    }
  },
  max_kernels: null
};

class ScriptedSource implements ISessionsSource {
  sessions: ISession[] = [session('etl')];
  variables: IVariableListing = {
    variables: [
      { name: 'x', type: 'int', kind: 'data', size: 28, preview: '42' }
    ],
    count: 1,
    truncated: false,
    stale: false,
    busy: false
  };
  checkpoints: ICheckpoint[] = [];
  failSessions: Error | null = null;
  failCheckpoints: Error | null = null;
  calls: string[] = [];

  async listSessions(): Promise<ISession[]> {
    this.calls.push('sessions');
    if (this.failSessions) {
      throw this.failSessions;
    }
    return JSON.parse(JSON.stringify(this.sessions));
  }

  async getPool(): Promise<IPool> {
    this.calls.push('pool');
    return JSON.parse(JSON.stringify(POOL));
  }

  async listVariables(name: string): Promise<IVariableListing> {
    this.calls.push(`variables:${name}`);
    return JSON.parse(JSON.stringify(this.variables));
  }

  async listCheckpoints(name: string): Promise<ICheckpoint[]> {
    this.calls.push(`checkpoints:${name}`);
    if (this.failCheckpoints) {
      throw this.failCheckpoints;
    }
    return JSON.parse(JSON.stringify(this.checkpoints));
  }
}

class Events {
  readonly stream = new Signal<this, IEmission>(this);
  state(
    name: string,
    from: SessionState | null,
    to: SessionState,
    reason = 'test'
  ): void {
    this.stream.emit({ schema_id: STATE_SCHEMA_ID, name, from, to, reason });
  }
}

/** Run timers and the promise callbacks they start, for `ms` of fake time. */
async function advance(ms: number): Promise<void> {
  const step = 50;
  for (let t = 0; t < ms; t += step) {
    await jest.advanceTimersByTimeAsync(Math.min(step, ms - t));
  }
}

describe('SessionsModel', () => {
  let source: ScriptedSource;
  let events: Events;
  let model: SessionsModel;
  let errors: string[];
  let active: boolean;

  beforeEach(() => {
    jest.useFakeTimers();
    source = new ScriptedSource();
    events = new Events();
    errors = [];
    active = true;
    model = new SessionsModel({
      source,
      events: events.stream,
      interval: 10000,
      minGap: 1000,
      isActive: () => active,
      onError: message => errors.push(message)
    });
  });

  afterEach(() => {
    model.dispose();
    jest.useRealTimers();
  });

  it('loads sessions and the pool when it starts', async () => {
    let changes = 0;
    model.changed.connect(() => changes++);
    await advance(100);
    expect(model.loaded).toBe(true);
    expect(model.sessions.map(s => s.name)).toEqual(['etl']);
    expect(model.pool?.pools['python3'].ready).toBe(2);
    expect(changes).toBe(1);
    expect(source.calls).toEqual(['sessions', 'pool']);
  });

  it('does not report a change when nothing changed (no re-render, no flicker)', async () => {
    await advance(100);
    let changes = 0;
    model.changed.connect(() => changes++);
    await model.refresh();
    await model.refresh();
    expect(changes).toBe(0);
    source.sessions = [session('etl', 'busy')];
    await model.refresh();
    expect(changes).toBe(1);
  });

  it('makes at most one request a second when idle, with a session expanded', async () => {
    await advance(100);
    model.setExpanded('etl', true);
    await advance(100);
    source.calls = [];
    await advance(60000);
    // the fallback poll: 4 requests (sessions, pool, variables, checkpoints) every 10 s
    expect(source.calls.length).toBeGreaterThan(0);
    expect(source.calls.length / 60).toBeLessThanOrEqual(1);
  });

  it('applies a state event at once and throttles the refreshes it asks for', async () => {
    await advance(100);
    source.calls = [];
    let changes = 0;
    model.changed.connect(() => changes++);
    for (let i = 0; i < 20; i++) {
      events.state('etl', 'idle', 'busy');
      events.state('etl', 'busy', 'idle');
    }
    expect(model.session('etl')?.state).toBe('idle');
    expect(changes).toBeGreaterThan(0); // applied without a request
    await advance(3000);
    const refreshes = source.calls.filter(c => c === 'sessions').length;
    expect(refreshes).toBeGreaterThanOrEqual(1);
    expect(refreshes).toBeLessThanOrEqual(2);
  });

  it('keeps a burst of events to one refresh per second', async () => {
    await advance(100);
    source.calls = [];
    for (let t = 0; t < 5000; t += 100) {
      events.stream.emit({
        schema_id: POOL_SCHEMA_ID,
        kind: 'hit',
        kernel_name: 'python3'
      });
      await advance(100);
    }
    const refreshes = source.calls.filter(c => c === 'sessions').length;
    expect(refreshes).toBeGreaterThanOrEqual(4);
    expect(refreshes).toBeLessThanOrEqual(6);
  });

  it('shows the dead -> restoring -> idle transitions, not idle <-> busy', async () => {
    await advance(100);
    const seen: string[] = [];
    model.changed.connect(() =>
      seen.push(model.session('etl')?.state ?? 'gone')
    );
    events.state('etl', 'idle', 'busy');
    events.state('etl', 'busy', 'idle');
    events.state('etl', 'idle', 'dead', 'kernel died (exit code -9)');
    events.state('etl', 'dead', 'restoring', 'restoring from checkpoint');
    events.state('etl', 'restoring', 'idle', 'restored');
    expect(seen).toEqual(['busy', 'idle', 'dead', 'restoring', 'idle']);
    expect(model.history('etl').map(t => t.to)).toEqual([
      'dead',
      'restoring',
      'idle'
    ]);
    expect(model.history('etl')[0].reason).toBe('kernel died (exit code -9)');
  });

  it('drops a deleted session at once', async () => {
    await advance(100);
    model.setExpanded('etl', true);
    events.state('etl', 'idle', 'deleted');
    expect(model.sessions).toEqual([]);
    expect(model.isExpanded('etl')).toBe(false);
  });

  it('ignores events of other schemas and malformed ones', async () => {
    await advance(100);
    source.calls = [];
    events.stream.emit({
      schema_id:
        'https://events.jupyter.org/jupyter_server/contents_service/v1',
      path: 'a'
    });
    events.stream.emit({
      schema_id: STATE_SCHEMA_ID,
      name: 'etl',
      to: 'exploded',
      reason: ''
    });
    expect(model.session('etl')?.state).toBe('idle');
    await advance(2000);
    expect(
      source.calls.filter(c => c === 'sessions').length
    ).toBeLessThanOrEqual(1);
    expect(
      asStateEvent({ schema_id: STATE_SCHEMA_ID, name: 3, to: 'idle' })
    ).toBeNull();
  });

  it('fetches variables and checkpoints of expanded sessions only', async () => {
    source.sessions = [session('etl'), session('train')];
    await advance(100);
    model.setExpanded('train', true);
    await advance(100);
    expect(source.calls).toContain('variables:train');
    expect(source.calls).not.toContain('variables:etl');
    expect(model.details('train')?.variables?.variables[0].preview).toBe('42');
    expect(model.details('etl')).toBeUndefined();
  });

  it('does not list the variables of a dead session, and shows why', async () => {
    source.sessions = [session('etl', 'dead')];
    await advance(100);
    model.setExpanded('etl', true);
    await advance(100);
    expect(source.calls).not.toContain('variables:etl');
    expect(model.details('etl')?.variablesError).toBe(
      'no running kernel (dead)'
    );
    expect(source.calls).toContain('checkpoints:etl');
  });

  it('shows a failing checkpoint listing inline', async () => {
    source.failCheckpoints = new Error(
      'no endpoint api/kernel-sessions/sessions/etl/checkpoints'
    );
    await advance(100);
    model.setExpanded('etl', true);
    await advance(100);
    expect(model.details('etl')?.checkpointsError).toContain('no endpoint');
    expect(model.details('etl')?.variables?.count).toBe(1);
    expect(errors).toEqual([]);
  });

  it('reports a failing server once, backs off, and recovers', async () => {
    // the poll draws each back-off delay at random between 10 s and 3x the last one: pinned to
    // the middle, the count below is the same on any machine, busy or not
    const random = jest.spyOn(Math, 'random').mockReturnValue(0.5);
    try {
      source.failSessions = new Error(
        'Cannot reach the server: connection refused'
      );
      await advance(100);
      await advance(60000);
      expect(errors).toEqual(['Cannot reach the server: connection refused']);
      expect(model.error).toBe('Cannot reach the server: connection refused');
      const attempts = source.calls.filter(c => c === 'sessions').length;
      expect(attempts).toBe(4); // polls every 10 s would have made 7
      source.failSessions = null;
      await model.refresh();
      expect(model.error).toBeNull();
      expect(model.sessions.length).toBe(1);
    } finally {
      random.mockRestore();
    }
  });

  it('stands by while the panel is hidden', async () => {
    active = false;
    await advance(100);
    source.calls = [];
    events.state('etl', 'idle', 'busy');
    await advance(30000);
    expect(source.calls).toEqual([]);
    active = true;
    model.requestRefresh(true);
    await advance(100);
    expect(source.calls).toContain('sessions');
  });
});

describe('SessionsModel and a listing overtaken by events', () => {
  afterEach(() => jest.useRealTimers());

  it('keeps the state of an event that arrived while a listing was on its way', async () => {
    jest.useFakeTimers();
    const source = new ScriptedSource();
    const events = new Events();
    const model = new SessionsModel({
      source,
      events: events.stream,
      minGap: 1000
    });
    await advance(100);
    // the server answers the next listing slowly, with the state it had when asked: busy
    let answer: (sessions: ISession[]) => void = () => undefined;
    source.listSessions = () => {
      source.calls.push('sessions');
      return new Promise<ISession[]>(resolve => {
        answer = resolve;
      });
    };
    const refreshed = model.refresh();
    await advance(10);
    events.state('etl', 'busy', 'idle');
    events.state('gone', 'idle', 'deleted');
    answer([session('etl', 'busy'), session('gone', 'idle')]);
    await refreshed;
    expect(model.session('etl')?.state).toBe('idle');
    expect(model.session('gone')).toBeUndefined();
    model.dispose();
  });
});

describe('SessionsModel.refresh', () => {
  afterEach(() => jest.useRealTimers());

  it('reads what changed before it was called, even while a refresh runs', async () => {
    jest.useFakeTimers();
    const source = new ScriptedSource();
    const model = new SessionsModel({ source, auto: false });
    let answer: (sessions: ISession[]) => void = () => undefined;
    const slow = source.listSessions.bind(source);
    source.listSessions = () =>
      new Promise<ISession[]>(resolve => {
        answer = resolve;
      });
    const first = model.refresh();
    await advance(10);
    source.listSessions = slow;
    source.sessions = [session('etl'), session('new')]; // the change the caller made
    const second = model.refresh();
    answer([session('etl')]); // the listing that was on its way before
    await first;
    await second;
    expect(model.sessions.map(s => s.name)).toEqual(['etl', 'new']);
    model.dispose();
  });
});
