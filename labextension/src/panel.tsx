/**
 * The "Kernel Sessions" sidebar: the list of sessions, the pool in the footer.
 *
 * It re-renders when the model changes (which it only reports for visible changes) and every
 * few seconds while shown, to age the "uptime" and "checkpoint … ago" texts; React updates only
 * what changed, so nothing flickers.
 */
import { addIcon, refreshIcon, ReactWidget } from '@jupyterlab/ui-components';
import type { CommandRegistry } from '@lumino/commands';
import type { Message } from '@lumino/messaging';
import * as React from 'react';

import { CommandIDs } from './commands';
import type { SessionsModel } from './model';
import { PoolFooter } from './pool';
import { SessionItem } from './session';

/** Re-render period for the age texts while the panel shows (no requests involved). */
const CLOCK_MS = 5000;

export class KernelSessionsPanel extends ReactWidget {
  constructor(model: SessionsModel, commands: CommandRegistry) {
    super();
    this.id = 'kernel-sessions-panel';
    this.addClass('jp-KernelSessions-panel');
    this.title.caption = 'Kernel Sessions';
    this._model = model;
    this._commands = commands;
    model.changed.connect(this._onChanged, this);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._stopClock();
    this._model.changed.disconnect(this._onChanged, this);
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._model.requestRefresh(true);
    this._clock = setInterval(() => this.update(), CLOCK_MS);
    this.update();
  }

  protected onBeforeHide(msg: Message): void {
    super.onBeforeHide(msg);
    this._stopClock();
  }

  protected render(): React.ReactElement {
    const model = this._model;
    const now = Date.now();
    const onToggle = (name: string) =>
      model.setExpanded(name, !model.isExpanded(name));
    return (
      <div className="jp-KernelSessions-body">
        <header className="jp-KernelSessions-header">
          <h2 className="jp-KernelSessions-title">Kernel Sessions</h2>
          <button
            className="jp-KernelSessions-iconButton"
            title="New session"
            data-action="new"
            onClick={() => void this._commands.execute(CommandIDs.create)}
          >
            <addIcon.react tag="span" />
          </button>
          <button
            className="jp-KernelSessions-iconButton"
            title="Refresh"
            data-action="refresh"
            onClick={() => void this._commands.execute(CommandIDs.refresh)}
          >
            <refreshIcon.react tag="span" />
          </button>
        </header>
        {model.error && (
          <div className="jp-KernelSessions-error" role="alert">
            {model.error}
          </div>
        )}
        <div className="jp-KernelSessions-scroll">
          <ul className="jp-KernelSessions-list">
            {model.sessions.map(s => (
              <SessionItem
                key={s.name}
                session={s}
                expanded={model.isExpanded(s.name)}
                details={model.details(s.name)}
                history={model.history(s.name)}
                commands={this._commands}
                now={now}
                onToggle={onToggle}
              />
            ))}
          </ul>
          {model.loaded && model.sessions.length === 0 && (
            <p className="jp-KernelSessions-empty">
              No sessions yet. A session is a kernel with a name that outlives
              its notebooks: create one with +, then attach notebooks and
              consoles to it.
            </p>
          )}
        </div>
        <PoolFooter pool={model.pool} />
      </div>
    );
  }

  private _onChanged(): void {
    if (this.isVisible) {
      this.update();
    }
  }

  private _stopClock(): void {
    if (this._clock !== null) {
      clearInterval(this._clock);
      this._clock = null;
    }
  }

  private _model: SessionsModel;
  private _commands: CommandRegistry;
  private _clock: ReturnType<typeof setInterval> | null = null;
}
