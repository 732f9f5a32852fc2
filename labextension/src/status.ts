/**
 * A status-bar item: which kernel session the current notebook is attached to.
 *
 * A notebook is attached when its kernel's name is `session.<name>` (the server reports a
 * session kernel that way). Clicking the item attaches the notebook to a session.
 */
import type { ISessionContext } from '@jupyterlab/apputils';
import type { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import type { CommandRegistry } from '@lumino/commands';
import { Signal } from '@lumino/signaling';
import type { ISignal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { CommandIDs } from './commands';
import { SESSION_SPEC_PREFIX } from './types';

/** The session a notebook's kernel belongs to, or null. */
export function attachedSession(
  context: ISessionContext | null | undefined
): string | null {
  const kernelName = context?.session?.kernel?.name ?? null;
  return kernelName && kernelName.startsWith(SESSION_SPEC_PREFIX)
    ? kernelName.slice(SESSION_SPEC_PREFIX.length)
    : null;
}

export class SessionStatusItem extends Widget {
  constructor(tracker: INotebookTracker, commands: CommandRegistry) {
    super();
    this.addClass('jp-KernelSessions-status');
    this.node.title =
      'Kernel session of this notebook (click to attach it to one)';
    this._tracker = tracker;
    this.node.addEventListener('click', () => {
      void commands.execute(CommandIDs.attach);
    });
    tracker.currentChanged.connect(this._onCurrent, this);
    this._onCurrent();
  }

  /** Emitted when the item should be shown or hidden. */
  get activeChanged(): ISignal<this, void> {
    return this._activeChanged;
  }

  /** Shown while a notebook is the current widget. */
  get isActive(): boolean {
    return this._panel !== null;
  }

  /** The session shown, or null. */
  get session(): string | null {
    return attachedSession(this._panel?.sessionContext);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._watch(null);
    this._tracker.currentChanged.disconnect(this._onCurrent, this);
    Signal.clearData(this);
    super.dispose();
  }

  private _onCurrent(): void {
    this._watch(this._tracker.currentWidget);
    this._render();
    this._activeChanged.emit();
  }

  private _watch(panel: NotebookPanel | null): void {
    if (this._panel) {
      this._panel.sessionContext.kernelChanged.disconnect(this._render, this);
      this._panel.sessionContext.sessionChanged.disconnect(this._render, this);
    }
    this._panel = panel;
    if (panel) {
      panel.sessionContext.kernelChanged.connect(this._render, this);
      panel.sessionContext.sessionChanged.connect(this._render, this);
    }
  }

  private _render(): void {
    const session = this.session;
    this.node.textContent = session ? `Session: ${session}` : 'Session: none';
    this.node.dataset.session = session ?? '';
    this.toggleClass('jp-mod-attached', session !== null);
  }

  private _tracker: INotebookTracker;
  private _panel: NotebookPanel | null = null;
  private _activeChanged = new Signal<this, void>(this);
}
