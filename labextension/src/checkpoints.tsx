/**
 * The checkpoints of one session, newest first, with restore, fork and delete.
 */
import { deleteIcon, duplicateIcon, undoIcon } from '@jupyterlab/ui-components';
import type { CommandRegistry } from '@lumino/commands';
import * as React from 'react';

import { CommandIDs } from './commands';
import { checkpointTime, formatAge, formatBytes } from './format';
import type { ICheckpoint } from './types';

export interface ICheckpointsTableProps {
  session: string;
  checkpoints: ICheckpoint[] | null;
  error: string | null;
  commands: CommandRegistry;
  now: number;
}

export function CheckpointsTable(
  props: ICheckpointsTableProps
): React.ReactElement {
  const { session, checkpoints, error, commands, now } = props;
  const run = (command: string, id: string) => () =>
    void commands.execute(command, { name: session, id });
  return (
    <section
      className="jp-KernelSessions-checkpoints"
      aria-label={`Checkpoints of ${session}`}
    >
      <div className="jp-KernelSessions-sectionHeader">
        <span className="jp-KernelSessions-sectionTitle">
          Checkpoints{checkpoints ? ` (${checkpoints.length})` : ''}
        </span>
      </div>
      {error && <div className="jp-KernelSessions-inlineError">{error}</div>}
      {checkpoints && (
        <table className="jp-KernelSessions-table jp-KernelSessions-checkpointsTable">
          <thead>
            <tr>
              <th>Label</th>
              <th className="jp-KernelSessions-cpAgeColumn">Age</th>
              <th className="jp-KernelSessions-cpSizeColumn">Size</th>
              <th className="jp-KernelSessions-cpVarsColumn">Vars</th>
              <th
                className="jp-KernelSessions-cpActionsColumn"
                aria-label="Actions"
              />
            </tr>
          </thead>
          <tbody>
            {checkpoints.map(c => (
              <tr
                key={c.id}
                data-checkpoint={c.id}
                className={c.valid ? undefined : 'jp-mod-invalid'}
                title={
                  c.valid
                    ? c.id
                    : `${c.id}: ${c.message ?? c.reason ?? 'invalid'}`
                }
              >
                <td className="jp-KernelSessions-cpLabel">
                  {c.label || (
                    <span className="jp-KernelSessions-muted">unlabelled</span>
                  )}
                  {!c.valid && (
                    <span className="jp-KernelSessions-invalid"> invalid</span>
                  )}
                </td>
                <td>
                  {formatAge(
                    checkpointTime(c.created) ?? checkpointTime(c.id),
                    now
                  )}
                </td>
                <td>{formatBytes(c.bytes)}</td>
                <td className="jp-KernelSessions-cpVars">
                  {c.variable_count ?? '—'}
                  {c.skipped_count ? ` (+${c.skipped_count} skipped)` : ''}
                </td>
                <td className="jp-KernelSessions-cpActions">
                  <button
                    className="jp-KernelSessions-iconButton"
                    title="Restore into this session"
                    data-action="restore"
                    disabled={!c.valid}
                    onClick={run(CommandIDs.restore, c.id)}
                  >
                    <undoIcon.react tag="span" />
                  </button>
                  <button
                    className="jp-KernelSessions-iconButton"
                    title="Fork into a new session"
                    data-action="fork"
                    disabled={!c.valid}
                    onClick={run(CommandIDs.fork, c.id)}
                  >
                    <duplicateIcon.react tag="span" />
                  </button>
                  <button
                    className="jp-KernelSessions-iconButton"
                    title="Delete this checkpoint"
                    data-action="delete"
                    onClick={run(CommandIDs.deleteCheckpoint, c.id)}
                  >
                    <deleteIcon.react tag="span" />
                  </button>
                </td>
              </tr>
            ))}
            {checkpoints.length === 0 && (
              <tr>
                <td colSpan={5} className="jp-KernelSessions-empty">
                  No checkpoints yet.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
    </section>
  );
}
