/**
 * The panel's model: sessions, the pool and the details (variables, checkpoints) of expanded
 * sessions, kept live from the server's event stream with a polling fallback.
 *
 * - Events (`session_state`, `pool`) are applied at once (a state change needs no request) and
 *   ask for a refresh; refreshes are throttled to one per `minGap` ms, so a chatty kernel
 *   cannot make the panel hammer the server.
 * - A `Poll` refreshes every `interval` ms as a fallback (backing off on failures) and stands
 *   by when the page is hidden or the panel is not showing (`isActive`).
 * - `changed` is emitted only when something visible changed, so an idle panel never
 *   re-renders (no flicker).
 */
import { JSONExt } from '@lumino/coreutils';
import type { ReadonlyJSONValue } from '@lumino/coreutils';
import type { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';
import { Signal } from '@lumino/signaling';
import type { ISignal } from '@lumino/signaling';

import { errorMessage } from './request';
import type {
  ICheckpoint,
  IPool,
  ISession,
  IStateEvent,
  IVariableListing,
  SessionState
} from './types';
import { EVENT_SCHEMA_PREFIX, SESSION_STATES, STATE_SCHEMA_ID } from './types';

/** What the model reads from the server (`KernelSessionsClient` implements it). */
export interface ISessionsSource {
  listSessions(): Promise<ISession[]>;
  getPool(): Promise<IPool>;
  listVariables(name: string): Promise<IVariableListing>;
  listCheckpoints(name: string): Promise<ICheckpoint[]>;
}

/** An event as `/api/events/subscribe` delivers it. */
export interface IEmission {
  readonly schema_id: string;
  readonly [key: string]: ReadonlyJSONValue | undefined;
}

/** Something that emits server events (the service manager's `events.stream`). */
export interface IEmissionStream {
  connect(
    slot: (sender: unknown, emission: IEmission) => void,
    thisArg?: unknown
  ): boolean;
  disconnect(
    slot: (sender: unknown, emission: IEmission) => void,
    thisArg?: unknown
  ): boolean;
}

/** The variables and checkpoints of one expanded session. */
export interface IDetails {
  variables: IVariableListing | null;
  variablesError: string | null;
  checkpoints: ICheckpoint[] | null;
  checkpointsError: string | null;
}

/** One state transition seen on the event stream. */
export interface ITransition {
  from: SessionState | null;
  to: SessionState;
  reason: string;
  time: number;
}

/** States in which a session has a kernel whose variables can be listed. */
const LIVE_STATES: ReadonlySet<SessionState> = new Set<SessionState>([
  'idle',
  'busy',
  'checkpointing',
  'restoring'
]);

/** Transitions kept per session for the panel's "recent" line (idle<->busy is left out). */
const HISTORY_LENGTH = 6;

export class SessionsModel implements IDisposable {
  constructor(options: SessionsModel.IOptions) {
    this._source = options.source;
    this._events = options.events ?? null;
    this._minGap = options.minGap ?? 1000;
    this._isActive = options.isActive ?? (() => true);
    this._onError = options.onError ?? (() => undefined);
    this._now = options.now ?? (() => Date.now());
    this._poll = new Poll<void, Error, 'stale'>({
      name: 'kernel-sessions:model',
      factory: () => this._fetch(),
      frequency: {
        interval: options.interval ?? 10000,
        backoff: true,
        max: 60000
      },
      standby: () => (this._isActive() ? 'when-hidden' : true),
      auto: options.auto ?? true
    });
    this._events?.connect(this._onEmission, this);
  }

  /** Emitted when anything shown changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Emitted for every `session_state` event (after it was applied). */
  get transitioned(): ISignal<this, IStateEvent> {
    return this._transitioned;
  }

  /** Sessions, sorted by name (as the server lists them). */
  get sessions(): ReadonlyArray<ISession> {
    return this._sessions;
  }

  /** True once the first listing arrived. */
  get loaded(): boolean {
    return this._loaded;
  }

  get pool(): IPool | null {
    return this._pool;
  }

  /** Why the last refresh failed, or null. */
  get error(): string | null {
    return this._error;
  }

  /** How many refreshes hit the server (each is a handful of requests). */
  get fetchCount(): number {
    return this._fetchCount;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  session(name: string): ISession | undefined {
    return this._sessions.find(s => s.name === name);
  }

  isExpanded(name: string): boolean {
    return this._expanded.has(name);
  }

  details(name: string): IDetails | undefined {
    return this._details.get(name);
  }

  /** Recent transitions of a session, oldest first. */
  history(name: string): ReadonlyArray<ITransition> {
    return this._history.get(name) ?? [];
  }

  /** Show or hide a session's details; showing one fetches them at once. */
  setExpanded(name: string, expanded: boolean): void {
    if (expanded === this._expanded.has(name)) {
      return;
    }
    if (expanded) {
      this._expanded.add(name);
      this.requestRefresh(true);
    } else {
      this._expanded.delete(name);
    }
    this._changed.emit();
  }

  /**
   * Refresh now, bypassing the throttle (after the user did something); what it reads was
   * asked for after this call.
   */
  async refresh(): Promise<void> {
    if (this._inflight) {
      await this._inflight.catch(() => undefined); // began before the caller's change
    }
    this._clearTimer();
    await this._fetch().catch(() => undefined); // reported through `error` and `onError`
  }

  /**
   * Ask for a refresh: at most one per `minGap` ms, never two at once; while the panel stands
   * by it waits for the poll. `soon` skips the wait (the user asked for something).
   */
  requestRefresh(soon = false): void {
    if (this._disposed || (!this._isActive() && !soon)) {
      return;
    }
    if (this._timer !== null) {
      if (!soon) {
        return;
      }
      this._clearTimer();
    }
    const wait = soon
      ? 0
      : Math.max(0, this._lastFetch + this._minGap - this._now());
    this._timer = setTimeout(() => {
      this._timer = null;
      this._fetch().catch(() => undefined); // reported through `error` and `onError`
    }, wait);
  }

  /** Apply one server event. */
  applyEmission(emission: IEmission): void {
    if (this._disposed || !emission.schema_id.startsWith(EVENT_SCHEMA_PREFIX)) {
      return;
    }
    if (emission.schema_id === STATE_SCHEMA_ID) {
      const event = asStateEvent(emission);
      if (event) {
        this._applyTransition(event);
        this._transitioned.emit(event);
      }
    }
    this.requestRefresh();
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._clearTimer();
    this._events?.disconnect(this._onEmission, this);
    this._poll.dispose();
    Signal.clearData(this);
  }

  private _onEmission(_: unknown, emission: IEmission): void {
    this.applyEmission(emission);
  }

  private _applyTransition(event: IStateEvent): void {
    this._lastEvent.set(event.name, { seq: ++this._seq, to: event.to });
    if (event.from !== event.to && !isQuiet(event)) {
      const list = [...(this._history.get(event.name) ?? [])];
      list.push({
        from: event.from,
        to: event.to,
        reason: event.reason,
        time: this._now()
      });
      this._history.set(event.name, list.slice(-HISTORY_LENGTH));
    }
    const index = this._sessions.findIndex(s => s.name === event.name);
    if (index < 0) {
      if (!isQuiet(event)) {
        this._changed.emit(); // the history line changed; the listing follows
      }
      return;
    }
    const sessions = [...this._sessions];
    if (event.to === 'deleted') {
      sessions.splice(index, 1);
      this._details.delete(event.name);
      this._expanded.delete(event.name);
    } else {
      sessions[index] = {
        ...sessions[index],
        state: event.to,
        reason: event.reason
      };
    }
    this._sessions = sessions;
    this._changed.emit();
  }

  private _clearTimer(): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  /** One refresh; a refresh asked for while one runs starts once it ends. */
  private _fetch(): Promise<void> {
    if (this._inflight) {
      this._again = true;
      return this._inflight;
    }
    this._inflight = this._fetchOnce().finally(() => {
      this._inflight = null;
      if (this._again && !this._disposed) {
        this._again = false;
        this.requestRefresh();
      }
    });
    return this._inflight;
  }

  private async _fetchOnce(): Promise<void> {
    this._lastFetch = this._now();
    this._fetchCount++;
    const seq = this._seq;
    let sessions: ISession[];
    let pool: IPool | null;
    try {
      [sessions, pool] = await Promise.all([
        this._source.listSessions(),
        this._source.getPool().catch((): IPool | null => null)
      ]);
    } catch (error) {
      const message = errorMessage(error);
      if (this._error !== message) {
        this._error = message;
        this._onError(message);
        this._changed.emit();
      }
      throw error instanceof Error ? error : new Error(message);
    }
    if (this._disposed) {
      return;
    }
    const names = new Set(sessions.map(s => s.name));
    for (const name of [...this._expanded]) {
      if (!names.has(name)) {
        this._expanded.delete(name);
      }
    }
    const details = new Map<string, IDetails>();
    await Promise.all(
      sessions
        .filter(s => this._expanded.has(s.name))
        .map(async s => details.set(s.name, await this._fetchDetails(s)))
    );
    if (this._disposed) {
      return;
    }
    // a state event that arrived while this listing was on its way is newer than the listing
    const newer = (name: string) => {
      const last = this._lastEvent.get(name);
      return last && last.seq > seq ? last : null;
    };
    sessions = sessions
      .filter(s => newer(s.name)?.to !== 'deleted')
      .map(s => {
        const shown = this._sessions.find(old => old.name === s.name);
        return shown && newer(s.name)
          ? { ...s, state: shown.state, reason: shown.reason }
          : s;
      });
    let changed = !this._loaded || this._error !== null;
    this._loaded = true;
    this._error = null;
    if (!sameJson(this._sessions, sessions)) {
      this._sessions = sessions;
      changed = true;
    }
    if (!sameJson(this._pool, pool)) {
      this._pool = pool;
      changed = true;
    }
    for (const name of [...this._details.keys()]) {
      if (!details.has(name)) {
        this._details.delete(name);
        changed = true;
      }
    }
    for (const [name, next] of details) {
      if (!sameJson(this._details.get(name) ?? null, next)) {
        this._details.set(name, next);
        changed = true;
      }
    }
    if (changed) {
      this._changed.emit();
    }
  }

  private async _fetchDetails(session: ISession): Promise<IDetails> {
    const previous = this._details.get(session.name);
    const live = LIVE_STATES.has(session.state);
    const [variables, checkpoints] = await Promise.all([
      live
        ? settle(this._source.listVariables(session.name))
        : Promise.resolve<ISettled<IVariableListing>>({
            value: null,
            // hibernated is a normal state: the panel says so, it is no error
            error:
              session.state === 'hibernated'
                ? null
                : `no running kernel (${session.state})`
          }),
      settle(this._source.listCheckpoints(session.name))
    ]);
    if (variables.value) {
      delete variables.value.listed_at; // changes with every listing; not shown
    }
    return {
      // a listing that failed while the session changes state keeps the last one shown
      variables:
        variables.value ?? (live ? (previous?.variables ?? null) : null),
      variablesError: variables.error,
      checkpoints: checkpoints.value,
      checkpointsError: checkpoints.error
    };
  }

  private _source: ISessionsSource;
  private _events: IEmissionStream | null;
  private _minGap: number;
  private _isActive: () => boolean;
  private _onError: (message: string) => void;
  private _now: () => number;
  private _poll: Poll<void, Error, 'stale'>;
  private _changed = new Signal<this, void>(this);
  private _transitioned = new Signal<this, IStateEvent>(this);
  private _sessions: ISession[] = [];
  private _pool: IPool | null = null;
  private _loaded = false;
  private _error: string | null = null;
  private _expanded = new Set<string>();
  private _details = new Map<string, IDetails>();
  private _history = new Map<string, ITransition[]>();
  private _seq = 0;
  private _lastEvent = new Map<string, { seq: number; to: SessionState }>();
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _inflight: Promise<void> | null = null;
  private _again = false;
  private _lastFetch = -Infinity;
  private _fetchCount = 0;
  private _disposed = false;
}

export namespace SessionsModel {
  export interface IOptions {
    /** Where sessions, the pool and details come from. */
    source: ISessionsSource;
    /** The server's event stream (`ServiceManager.events.stream`). */
    events?: IEmissionStream;
    /** Fallback polling interval in ms (default 10 s). */
    interval?: number;
    /** Least ms between two refreshes asked for by events (default 1 s). */
    minGap?: number;
    /** Whether the panel shows; the poll stands by otherwise. */
    isActive?: () => boolean;
    /** Called once when refreshing starts failing (with the reason). */
    onError?: (message: string) => void;
    /** The clock (ms). */
    now?: () => number;
    /** Start polling at once (default true). */
    auto?: boolean;
  }
}

interface ISettled<T> {
  value: T | null;
  error: string | null;
}

async function settle<T>(promise: Promise<T>): Promise<ISettled<T>> {
  try {
    return { value: await promise, error: null };
  } catch (error) {
    return { value: null, error: errorMessage(error) };
  }
}

function sameJson<T>(a: T, b: T): boolean {
  return JSONExt.deepEqual(
    a as unknown as ReadonlyJSONValue,
    b as unknown as ReadonlyJSONValue
  );
}

function isQuiet(event: IStateEvent): boolean {
  const quiet = ['idle', 'busy'];
  return (
    quiet.includes(event.to) &&
    (event.from === null || quiet.includes(event.from))
  );
}

function isState(value: unknown): value is SessionState {
  return (
    typeof value === 'string' &&
    (SESSION_STATES as ReadonlyArray<string>).includes(value)
  );
}

/** A `session_state` emission as an `IStateEvent`, or null when it is malformed. */
export function asStateEvent(emission: IEmission): IStateEvent | null {
  const { name, from, to, reason } = emission;
  if (typeof name !== 'string' || !isState(to)) {
    return null;
  }
  return {
    name,
    from: isState(from) ? from : null,
    to,
    reason: typeof reason === 'string' ? reason : ''
  };
}
