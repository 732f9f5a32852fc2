/**
 * Every failure the user should know about becomes a JupyterLab notification.
 */
import { Notification } from '@jupyterlab/apputils';

import { errorMessage } from './request';

/** Show `what failed: <the server's message>` as an error notification. */
export function notifyError(what: string, error: unknown): void {
  Notification.error(`${what}: ${errorMessage(error)}`, { autoClose: 8000 });
}

export function notifySuccess(message: string): void {
  Notification.success(message, { autoClose: 4000 });
}

export function notifyWarning(message: string): void {
  Notification.warning(message, { autoClose: 8000 });
}

/**
 * Run an action; report its failure as a notification instead of letting it vanish.
 * Returns the action's result, or undefined when it failed.
 */
export async function reported<T>(
  what: string,
  action: () => Promise<T>
): Promise<T | undefined> {
  try {
    return await action();
  } catch (error) {
    console.error(`kernel-sessions: ${what}`, error);
    notifyError(what, error);
    return undefined;
  }
}
