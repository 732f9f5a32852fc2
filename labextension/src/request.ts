/**
 * Every request the panel makes to `{base_url}api/kernel-sessions/` lives here.
 *
 * Errors from the API are JSON `{message, reason}`; they become an `ApiError` carrying both,
 * so callers can show `message` to the user. Network failures become an `ApiError` with
 * reason `network` and status 0.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type {
  ICheckpoint,
  ICheckpointCreate,
  ICheckpointDetail,
  IPool,
  IRestoreRequest,
  IRestoreResult,
  ISession,
  ISessionCreate,
  IVariableListing
} from './types';

/** The API root, relative to the server's base URL. */
export const API_ROOT = 'api/kernel-sessions';

/** A failed API call: the server's message and machine-readable reason. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly reason: string,
    readonly status: number
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** A JSON value as the API sends it. */
type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Path parts a URL would resolve instead of sending. */
const DOT_SEGMENTS: ReadonlySet<string> = new Set(['', '.', '..']);

/**
 * A thin client for the kernel-sessions REST API.
 */
export class KernelSessionsClient {
  constructor(settings?: ServerConnection.ISettings) {
    this.serverSettings = settings ?? ServerConnection.makeSettings();
  }

  readonly serverSettings: ServerConnection.ISettings;

  /**
   * The URL of an API path (each part is URL-encoded). `.`, `..`, empty parts and parts
   * holding a `/` are refused: a URL resolves dot segments, so a variable named `..` would
   * address its session, and no name, variable or checkpoint id of the API has a `/`.
   */
  url(...parts: string[]): string {
    for (const part of parts) {
      if (
        typeof part !== 'string' ||
        DOT_SEGMENTS.has(part) ||
        part.includes('/')
      ) {
        throw new Error(
          `'${String(part).slice(0, 80)}' is not a valid name or id ` +
            "(empty, '.', '..' and names with '/' are refused)"
        );
      }
    }
    return URLExt.join(
      this.serverSettings.baseUrl,
      API_ROOT,
      ...parts.map(encodeURIComponent)
    );
  }

  listSessions(): Promise<ISession[]> {
    return this.call<ISession[]>('GET', ['sessions']);
  }

  getSession(name: string): Promise<ISession> {
    return this.call<ISession>('GET', ['sessions', name]);
  }

  createSession(body: ISessionCreate): Promise<ISession> {
    return this.call<ISession>('POST', ['sessions'], body);
  }

  renameSession(name: string, newName: string): Promise<ISession> {
    return this.call<ISession>('PATCH', ['sessions', name], { name: newName });
  }

  deleteSession(name: string): Promise<void> {
    return this.call<void>('DELETE', ['sessions', name]);
  }

  restartSession(name: string): Promise<ISession> {
    return this.call<ISession>('POST', ['sessions', name, 'restart'], {});
  }

  interruptSession(name: string): Promise<ISession> {
    return this.call<ISession>('POST', ['sessions', name, 'interrupt'], {});
  }

  /** Wake a hibernated session now (its checkpoint is restored into a fresh kernel). */
  wakeSession(name: string): Promise<ISession> {
    return this.call<ISession>('POST', ['sessions', name, 'wake'], {});
  }

  listVariables(name: string): Promise<IVariableListing> {
    return this.call<IVariableListing>('GET', ['sessions', name, 'variables']);
  }

  listCheckpoints(name: string): Promise<ICheckpoint[]> {
    return this.call<ICheckpoint[]>('GET', ['sessions', name, 'checkpoints']);
  }

  createCheckpoint(
    name: string,
    body: ICheckpointCreate = {}
  ): Promise<ICheckpointDetail> {
    return this.call<ICheckpointDetail>(
      'POST',
      ['sessions', name, 'checkpoints'],
      body
    );
  }

  deleteCheckpoint(name: string, id: string): Promise<void> {
    return this.call<void>('DELETE', ['sessions', name, 'checkpoints', id]);
  }

  restoreCheckpoint(
    name: string,
    id: string,
    body: IRestoreRequest = {}
  ): Promise<IRestoreResult> {
    return this.call<IRestoreResult>(
      'POST',
      ['sessions', name, 'checkpoints', id, 'restore'],
      body
    );
  }

  getPool(): Promise<IPool> {
    return this.call<IPool>('GET', ['pool']);
  }

  /**
   * One request: JSON in, JSON out (nothing for 204). Anything but a 2xx is an `ApiError`; a
   * part `url()` refuses is a plain `Error`, thrown before anything is sent.
   */
  async call<T>(method: string, parts: string[], body?: object): Promise<T> {
    const url = this.url(...parts); // a refused part is an Error of its own, not "network"
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { 'Content-Type': 'application/json' };
    }
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(
        url,
        init,
        this.serverSettings
      );
    } catch (error) {
      throw new ApiError(
        `Cannot reach the server: ${errorMessage(error)}`,
        'network',
        0
      );
    }
    if (response.status === 204) {
      return undefined as T;
    }
    const text = await response.text();
    const data = parseJson(text);
    if (!response.ok) {
      throw errorFromResponse(response, data, text);
    }
    if (data === undefined) {
      throw new ApiError(
        `${method} ${parts.join('/')}: the server answered with something other than JSON`,
        'invalid_response',
        response.status
      );
    }
    return data as T;
  }
}

/** The `ApiError` for a non-2xx answer, using the API's `{message, reason}` when present. */
export function errorFromResponse(
  response: { status: number; statusText: string },
  data: Json | undefined,
  text: string
): ApiError {
  if (data && typeof data === 'object' && !Array.isArray(data)) {
    const message = data['message'];
    const reason = data['reason'];
    if (typeof message === 'string' && message) {
      return new ApiError(
        message,
        typeof reason === 'string' ? reason : 'error',
        response.status
      );
    }
  }
  const detail =
    text && text.length < 200 && !text.startsWith('<') ? `: ${text}` : '';
  return new ApiError(
    `${response.status} ${response.statusText || 'error'}${detail}`,
    'http_' + response.status,
    response.status
  );
}

function parseJson(text: string): Json | undefined {
  if (!text) {
    return undefined;
  }
  try {
    return JSON.parse(text) as Json;
  } catch {
    return undefined;
  }
}

/** A readable message for anything thrown. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) {
    return error.message;
  }
  return String(error);
}
