/**
 * The shapes of the kernel-sessions REST API (`kernel_sessions/server/api.yaml`) and of its events.
 */

/** Every state of the session state machine. */
export type SessionState =
  | 'starting'
  | 'idle'
  | 'busy'
  | 'checkpointing'
  | 'restoring'
  | 'hibernated'
  | 'unresponsive'
  | 'dead'
  | 'deleted';

export const SESSION_STATES: ReadonlyArray<SessionState> = [
  'starting',
  'idle',
  'busy',
  'checkpointing',
  'restoring',
  'hibernated',
  'unresponsive',
  'dead',
  'deleted'
];

/** The rule every session name follows (the server checks it too). */
export const SESSION_NAME_RULE = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/**
 * The same rule as an HTML `pattern` (for inputs): implicitly anchored, and compiled with the
 * `v` flag, where a literal `-` in a class must be escaped.
 */
export const NAME_PATTERN = '[a-z0-9][a-z0-9._\\-]{0,62}';

/** Kernelspecs named `session.<name>` stand for sessions. */
export const SESSION_SPEC_PREFIX = 'session.';

export interface IKernelInfo {
  id: string | null;
  name: string;
  execution_state: string | null;
  connections: number;
  /** The kernel's process id (null without a running local kernel). */
  pid: number | null;
}

export interface IAttachedNotebook {
  id: string;
  path: string | null;
  name: string | null;
  type: string | null;
}

export interface ISession {
  name: string;
  kernel: IKernelInfo;
  state: SessionState;
  reason: string;
  created: string;
  last_activity: string | null;
  restarts: number;
  owner: string | null;
  lease_expires: string | null;
  ttl: number | null;
  tags: { [key: string]: string };
  memory_rss: number | null;
  notebooks: IAttachedNotebook[];
  last_checkpoint: string | null;
}

export interface ISessionCreate {
  name: string;
  kernel_name?: string;
  ttl?: number | null;
  tags?: { [key: string]: string };
  /** Fork: the new session starts from this session's checkpoint (default its latest). */
  from?: { session: string; checkpoint?: string };
}

export type VariableKind =
  'data' | 'function' | 'class' | 'module' | 'instance';

export interface IVariable {
  name: string;
  type: string;
  kind: VariableKind;
  size?: number | null;
  shape?: number[] | null;
  len?: number | null;
  dtype?: string | null;
  preview?: string;
  error?: string | null;
}

export interface IVariableListing {
  variables: IVariable[];
  count: number;
  truncated: boolean;
  stale: boolean;
  busy: boolean;
  listed_at?: number | null;
}

export interface ICheckpoint {
  id: string;
  session: string;
  label: string | null;
  created: string | null;
  /** Bytes of the blobs it uses. */
  bytes: number | null;
  /** Bytes this checkpoint wrote (unchanged variables cost none). */
  new_bytes: number | null;
  variable_count: number | null;
  skipped_count: number | null;
  /** False when the manifest fails verification (see `reason`, `message`). */
  valid: boolean;
  /** True when some variable could not be saved (never chosen over a complete one). */
  partial?: boolean | null;
  reason?: string | null;
  message?: string | null;
}

export interface ICheckpointDetail extends ICheckpoint {
  kernelspec: string | null;
  versions: { [name: string]: string | null };
  execution_count?: number | null;
  variables: {
    name: string;
    type: string | null;
    serializer: string;
    size: number;
  }[];
  skipped: { name: string; type: string | null; reason: string }[];
}

export interface ICheckpointCreate {
  label?: string | null;
  variables?: string[];
  timeout?: number;
}

export interface IRestoreRequest {
  /** Fork: restore into a new session of this name. */
  into?: string | null;
  variables?: string[];
  timeout?: number;
}

export interface IRestoreResult {
  /** The session restored into (the new one for a fork). */
  session: ISession;
  checkpoint: string;
  restored: string[];
  failed: { name: string; reason: string }[];
  /** Variables the checkpoint did not know, removed by a whole restore. */
  removed: string[];
  /** Variables the checkpoint knew that are not in the namespace afterwards. */
  missing?: string[];
  /** When the checkpoint was chosen: the newer ones not taken, and why. */
  passed_over?: { id: string; reason: string }[];
}

export interface IPoolStats {
  target: number;
  ready: number;
  starting: number;
  hits: number;
  misses: number;
  hit_rate: number | null;
  acquire_p50_ms: number | null;
  refills: number;
  replaced: number;
}

export interface IPool {
  pools: { [kernelName: string]: IPoolStats };
  max_kernels: number | null;
}

/** Schema ids of the server's events (jupyter_events, `/api/events/subscribe`). */
export const EVENT_SCHEMA_PREFIX =
  'https://events.jupyter.org/kernel_sessions/';
export const STATE_SCHEMA_ID = EVENT_SCHEMA_PREFIX + 'session_state/v1';
export const POOL_SCHEMA_ID = EVENT_SCHEMA_PREFIX + 'pool/v1';

/** A `session_state` event: one transition of one session. */
export interface IStateEvent {
  name: string;
  from: SessionState | null;
  to: SessionState;
  reason: string;
}
