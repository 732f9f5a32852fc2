/**
 * One session in the panel: status dot, name, kernelspec, memory, uptime, attached notebooks,
 * last checkpoint age, actions; expanded, its variables and checkpoints.
 */
import {
  caretDownIcon,
  caretRightIcon,
  consoleIcon,
  linkIcon,
  refreshIcon,
  runIcon,
  saveIcon,
  stopIcon
} from '@jupyterlab/ui-components';
import type { LabIcon } from '@jupyterlab/ui-components';
import type { CommandRegistry } from '@lumino/commands';
import * as React from 'react';

import { CheckpointsTable } from './checkpoints';
import { CommandIDs } from './commands';
import {
  checkpointTime,
  formatAge,
  formatBytes,
  formatDuration,
  parseTime
} from './format';
import type { IDetails, ITransition } from './model';
import type { ISession } from './types';
import { VariablesTable } from './variables';

export interface ISessionItemProps {
  session: ISession;
  expanded: boolean;
  details: IDetails | undefined;
  history: ReadonlyArray<ITransition>;
  commands: CommandRegistry;
  now: number;
  onToggle: (name: string) => void;
}

interface IAction {
  command: string;
  icon: LabIcon;
  title: string;
  action: string;
}

const ACTIONS: ReadonlyArray<IAction> = [
  {
    command: CommandIDs.attach,
    icon: linkIcon,
    title: 'Attach the current notebook',
    action: 'attach'
  },
  {
    command: CommandIDs.openConsole,
    icon: consoleIcon,
    title: 'Open a console',
    action: 'console'
  },
  {
    command: CommandIDs.checkpoint,
    icon: saveIcon,
    title: 'Checkpoint now',
    action: 'checkpoint'
  },
  {
    command: CommandIDs.restart,
    icon: refreshIcon,
    title: 'Restart',
    action: 'restart'
  },
  {
    command: CommandIDs.shutdown,
    icon: stopIcon,
    title: 'Shut down',
    action: 'shutdown'
  }
];

/** Attached notebooks by file name, consoles by their title ("Console 1"). */
function notebookNames(session: ISession): string {
  return session.notebooks
    .map(n =>
      n.type === 'console' && n.name
        ? n.name
        : (n.path ?? n.name ?? n.id).split('/').pop() || n.id
    )
    .join(', ');
}

export function SessionItem(props: ISessionItemProps): React.ReactElement {
  const { session, expanded, details, history, commands, now } = props;
  const created = parseTime(session.created);
  const checkpointAt = checkpointTime(session.last_checkpoint);
  const notebooks = notebookNames(session);
  const toggle = () => props.onToggle(session.name);
  const hibernated = session.state === 'hibernated';
  return (
    <li
      className="jp-KernelSessions-session"
      data-session={session.name}
      data-state={session.state}
    >
      <div className="jp-KernelSessions-row">
        <button
          className="jp-KernelSessions-toggle"
          aria-expanded={expanded}
          title={
            expanded
              ? 'Hide variables and checkpoints'
              : 'Show variables and checkpoints'
          }
          onClick={toggle}
        >
          {expanded ? (
            <caretDownIcon.react tag="span" />
          ) : (
            <caretRightIcon.react tag="span" />
          )}
          <span
            className={`jp-KernelSessions-dot jp-mod-${session.state}`}
            title={`${session.state}: ${session.reason}`}
          />
          <span className="jp-KernelSessions-name">{session.name}</span>
          <span className="jp-KernelSessions-state">{session.state}</span>
        </button>
        <span className="jp-KernelSessions-actions">
          {hibernated && (
            <button
              className="jp-KernelSessions-iconButton"
              title={`Wake (${session.name}): restore its checkpoint into a fresh kernel`}
              data-action="wake"
              onClick={() =>
                void commands.execute(CommandIDs.wake, { name: session.name })
              }
            >
              <runIcon.react tag="span" />
            </button>
          )}
          {ACTIONS.map(a => (
            <button
              key={a.action}
              className="jp-KernelSessions-iconButton"
              title={`${a.title} (${session.name})`}
              data-action={a.action}
              onClick={() =>
                void commands.execute(a.command, { name: session.name })
              }
            >
              <a.icon.react tag="span" />
            </button>
          ))}
        </span>
      </div>
      <div className="jp-KernelSessions-meta">
        <span title="Kernelspec">{session.kernel.name}</span>
        <span title="Resident memory">{formatBytes(session.memory_rss)}</span>
        {hibernated ? (
          <span
            className="jp-KernelSessions-hibernated"
            title="Its kernel is stopped; attaching or Wake restores its checkpoint"
          >
            hibernated
          </span>
        ) : (
          <span title="Uptime">
            {created
              ? `up ${formatDuration((now - created.getTime()) / 1000)}`
              : '—'}
          </span>
        )}
        <span
          className="jp-KernelSessions-lastCheckpoint"
          title={session.last_checkpoint ?? 'No checkpoint yet'}
        >
          {checkpointAt
            ? `checkpoint ${formatAge(checkpointAt, now)}`
            : 'no checkpoint'}
        </span>
        {session.restarts > 0 && (
          <span title="Restarts">{session.restarts}× restarted</span>
        )}
      </div>
      <div className="jp-KernelSessions-meta">
        <span
          className="jp-KernelSessions-notebooks"
          title="Attached notebooks and consoles"
        >
          {notebooks ? `attached: ${notebooks}` : 'nothing attached'}
        </span>
      </div>
      {session.state === 'dead' && (
        <div className="jp-KernelSessions-inlineError">{session.reason}</div>
      )}
      {session.state === 'unresponsive' && (
        <div
          className="jp-KernelSessions-inlineError"
          data-warning="unresponsive"
        >
          {`Not answering (${session.reason}). Restart or shut it down to free it.`}
        </div>
      )}
      {expanded && (
        <div className="jp-KernelSessions-details">
          {history.length > 0 && (
            <div
              className="jp-KernelSessions-history"
              title="Recent state changes"
            >
              {history.map((t, i) => (
                <span
                  key={i}
                  className="jp-KernelSessions-transition"
                  data-to={t.to}
                  title={t.reason}
                >
                  {t.to}
                </span>
              ))}
            </div>
          )}
          <VariablesTable
            session={session.name}
            listing={details?.variables ?? null}
            error={details?.variablesError ?? null}
            note={
              hibernated
                ? 'Hibernated: its variables are in its checkpoint. Wake it to list them.'
                : null
            }
          />
          <CheckpointsTable
            session={session.name}
            checkpoints={details?.checkpoints ?? null}
            error={details?.checkpointsError ?? null}
            commands={commands}
            now={now}
          />
        </div>
      )}
    </li>
  );
}
