/**
 * The panel's actions, each a command (so each is in the palette too).
 *
 * Commands take `{name}` (a session) and, for checkpoint actions, `{id}` (a checkpoint); from the
 * palette, without arguments, they ask which one. Destructive actions ask for confirmation.
 * Every failure becomes a notification.
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import type { ICommandPalette, ISessionContext } from '@jupyterlab/apputils';
import type { INotebookTracker } from '@jupyterlab/notebook';
import type { ReadonlyPartialJSONObject } from '@lumino/coreutils';

import { askName, askNewSession, confirm, pick } from './dialogs';
import type { ISpecChoice } from './dialogs';
import { checkpointTime, formatBytes } from './format';
import type { SessionsModel } from './model';
import { notifyError, notifySuccess, notifyWarning, reported } from './notify';
import { errorMessage } from './request';
import type { KernelSessionsClient } from './request';
import type {
  ICheckpoint,
  IRestoreResult,
  ISession,
  ISessionCreate
} from './types';
import { SESSION_SPEC_PREFIX } from './types';

export namespace CommandIDs {
  export const open = 'kernel-sessions:open';
  export const refresh = 'kernel-sessions:refresh';
  export const create = 'kernel-sessions:create';
  export const attach = 'kernel-sessions:attach';
  export const openConsole = 'kernel-sessions:open-console';
  export const checkpoint = 'kernel-sessions:checkpoint';
  export const restart = 'kernel-sessions:restart';
  export const interrupt = 'kernel-sessions:interrupt';
  export const wake = 'kernel-sessions:wake';
  export const shutdown = 'kernel-sessions:shutdown';
  export const restore = 'kernel-sessions:restore';
  export const fork = 'kernel-sessions:fork';
  export const deleteCheckpoint = 'kernel-sessions:delete-checkpoint';
}

/** What the commands work with. */
export interface ICommandContext {
  app: JupyterFrontEnd;
  client: KernelSessionsClient;
  model: SessionsModel;
  notebooks: INotebookTracker | null;
  /** Reveal the panel. */
  showPanel: () => void;
}

const CATEGORY = 'Kernel Sessions';

function argString(
  args: ReadonlyPartialJSONObject,
  key: string
): string | null {
  const value = args[key];
  return typeof value === 'string' && value ? value : null;
}

/** The kernelspecs a session can be created with (sessions' pseudo specs left out). */
async function specChoices(
  app: JupyterFrontEnd
): Promise<{ specs: ISpecChoice[]; defaultSpec: string | null }> {
  const manager = app.serviceManager.kernelspecs;
  await manager.ready;
  const all = manager.specs;
  const specs: ISpecChoice[] = Object.values(all?.kernelspecs ?? {})
    .filter(
      (spec): spec is NonNullable<typeof spec> =>
        !!spec && !spec.name.startsWith(SESSION_SPEC_PREFIX)
    )
    .map(spec => ({ name: spec.name, displayName: spec.display_name }))
    .sort((a, b) => a.displayName.localeCompare(b.displayName));
  const preferred = all?.default ?? null;
  const defaultSpec =
    preferred && specs.some(s => s.name === preferred)
      ? preferred
      : (specs[0]?.name ?? null);
  return { specs, defaultSpec };
}

/** The session context of a widget that has one (a console, a notebook). */
function sessionContextOf(widget: unknown): ISessionContext | null {
  if (widget && typeof widget === 'object' && 'sessionContext' in widget) {
    return (widget as { sessionContext: ISessionContext }).sessionContext;
  }
  return null;
}

/** The text a checkpoint is shown as in pickers and confirmations. */
export function checkpointTitle(checkpoint: ICheckpoint): string {
  const time =
    checkpointTime(checkpoint.created) ?? checkpointTime(checkpoint.id);
  const when = time ? time.toLocaleString() : checkpoint.id;
  return checkpoint.label ? `${checkpoint.label} (${when})` : when;
}

export function registerCommands(
  context: ICommandContext,
  palette: ICommandPalette | null
): void {
  const { app, client, model, notebooks } = context;
  const { commands } = app;

  /** The session an action is for: its argument, or one the user picks. */
  /** "It is shared: …" when more than one client uses the session, else nothing. */
  function sharedText(name: string): string {
    const session = model.session(name);
    if (!session) {
      return '';
    }
    const clients = Math.max(
      session.notebooks.length,
      session.kernel.connections
    );
    return clients > 1
      ? `It is shared: ${clients} notebooks or consoles use it, and all of them are affected. `
      : '';
  }

  /** What becomes of the session's state: kept in its checkpoints, or none to come back to. */
  function checkpointText(name: string, deleting = false): string {
    const session = model.session(name);
    if (!session?.last_checkpoint) {
      return deleting
        ? 'It has no checkpoint: its variables are gone for good.'
        : 'it has no checkpoint to come back to.';
    }
    return deleting
      ? `Its checkpoints stay (a new session ${name} can restore them) unless purged.`
      : 'its checkpoints are kept (restore the latest to get them back).';
  }

  async function sessionArg(
    args: ReadonlyPartialJSONObject,
    title: string
  ): Promise<string | null> {
    const given = argString(args, 'name');
    if (given) {
      return given;
    }
    if (!model.loaded) {
      await model.refresh();
    }
    const names = model.sessions.map(s => s.name);
    if (names.length === 0) {
      notifyWarning('There are no kernel sessions yet: create one first.');
      return null;
    }
    return pick(title, 'Session', names);
  }

  /** The checkpoint an action is for: its argument, or one the user picks. */
  async function checkpointArg(
    name: string,
    args: ReadonlyPartialJSONObject,
    title: string
  ): Promise<ICheckpoint | null> {
    const id = argString(args, 'id');
    const list = await reported(`Listing checkpoints of ${name}`, () =>
      client.listCheckpoints(name)
    );
    if (!list) {
      return null;
    }
    if (id) {
      const found = list.find(c => c.id === id);
      if (!found) {
        notifyWarning(`Checkpoint ${id} of ${name} is gone.`);
      }
      return found ?? null;
    }
    if (list.length === 0) {
      notifyWarning(`Session ${name} has no checkpoints.`);
      return null;
    }
    const titles = list.map(checkpointTitle);
    const chosen = await pick(title, 'Checkpoint', titles);
    return chosen === null ? null : (list[titles.indexOf(chosen)] ?? null);
  }

  /** Sessions are kernelspecs too (`session.<name>`): show new and deleted ones at once. */
  const refreshSpecs = () =>
    reported('Refreshing kernelspecs', () =>
      app.serviceManager.kernelspecs.refreshSpecs()
    );

  const sessionLabel =
    (action: string, fallback: string) =>
    (args: ReadonlyPartialJSONObject): string => {
      const name = argString(args, 'name');
      return name ? `${action} ${name}` : fallback;
    };

  commands.addCommand(CommandIDs.open, {
    label: 'Show Kernel Sessions',
    execute: () => context.showPanel()
  });

  commands.addCommand(CommandIDs.refresh, {
    label: 'Refresh Kernel Sessions',
    execute: () => model.refresh()
  });

  commands.addCommand(CommandIDs.create, {
    label: 'New Kernel Session…',
    caption: 'Start a named kernel session from the warm pool',
    execute: async () => {
      const choices = await reported('Listing kernelspecs', () =>
        specChoices(app)
      );
      if (!choices) {
        return;
      }
      // a refusal (a taken name, a full pool) asks again with the reason, keeping the answer
      let previous: ISessionCreate | null = null;
      let refusal: string | null = null;
      let session: ISession | undefined;
      while (!session) {
        const request = await askNewSession(
          choices.specs,
          choices.defaultSpec,
          previous,
          refusal
        );
        if (!request) {
          return;
        }
        try {
          session = await client.createSession(request);
        } catch (error) {
          previous = request;
          refusal = `Not created: ${errorMessage(error)}`;
        }
      }
      notifySuccess(
        `Session ${session.name} is ready (${session.kernel.name}).`
      );
      await model.refresh();
      model.setExpanded(session.name, true);
      await refreshSpecs();
    }
  });

  commands.addCommand(CommandIDs.attach, {
    label: args =>
      argString(args, 'name')
        ? `Attach Current Notebook to ${argString(args, 'name')}`
        : 'Attach Current Notebook to a Kernel Session…',
    caption: 'Run the current notebook in a kernel session',
    isEnabled: () => !!notebooks?.currentWidget,
    execute: async args => {
      const panel = notebooks?.currentWidget;
      if (!panel) {
        notifyWarning(
          'Open a notebook first: it is the notebook that gets attached.'
        );
        return;
      }
      const name = await sessionArg(args, 'Attach Notebook');
      if (!name) {
        return;
      }
      const done = await reported(
        `Attaching ${panel.context.path} to ${name}`,
        async () => {
          await panel.sessionContext.ready;
          await panel.sessionContext.changeKernel({
            name: SESSION_SPEC_PREFIX + name
          });
          return true;
        }
      );
      if (done) {
        notifySuccess(
          `${panel.context.localPath} is attached to session ${name}.`
        );
        await model.refresh();
      }
    }
  });

  commands.addCommand(CommandIDs.openConsole, {
    label: sessionLabel('Open Console on', 'Open Console on a Kernel Session…'),
    execute: async args => {
      const name = await sessionArg(args, 'Open Console');
      if (!name) {
        return;
      }
      await reported(`Opening a console on ${name}`, async () => {
        const widget: unknown = await commands.execute('console:create', {
          kernelPreference: { name: SESSION_SPEC_PREFIX + name },
          activate: true
        });
        await sessionContextOf(widget)?.ready; // the console is attached once it has its kernel
      });
      await model.refresh();
    }
  });

  commands.addCommand(CommandIDs.checkpoint, {
    label: sessionLabel('Checkpoint', 'Checkpoint a Kernel Session Now…'),
    caption: "Save the session's variables now",
    execute: async args => {
      const name = await sessionArg(args, 'Checkpoint Now');
      if (!name) {
        return;
      }
      const detail = await reported(`Checkpointing ${name}`, () =>
        client.createCheckpoint(name)
      );
      if (detail) {
        notifySuccess(
          `Checkpoint of ${name}: ${detail.variables.length} variables, ${formatBytes(detail.bytes)}.`
        );
        if (detail.skipped.length) {
          notifyWarning(
            `Not in the checkpoint of ${name}: ` +
              detail.skipped.map(s => `${s.name} (${s.reason})`).join(', ')
          );
        }
      }
      await model.refresh();
    }
  });

  commands.addCommand(CommandIDs.restart, {
    label: sessionLabel('Restart', 'Restart a Kernel Session…'),
    execute: async args => {
      const name = await sessionArg(args, 'Restart Session');
      if (
        !name ||
        !(await confirm(
          'Restart Kernel Session',
          `Restart ${name}? ${sharedText(name)}Its variables are lost; ${checkpointText(name)}`,
          'Restart'
        ))
      ) {
        return;
      }
      await reported(`Restarting ${name}`, () => client.restartSession(name));
      await model.refresh();
    }
  });

  commands.addCommand(CommandIDs.interrupt, {
    label: sessionLabel('Interrupt', 'Interrupt a Kernel Session…'),
    execute: async args => {
      const name = await sessionArg(args, 'Interrupt Session');
      if (name) {
        await reported(`Interrupting ${name}`, () =>
          client.interruptSession(name)
        );
        await model.refresh();
      }
    }
  });

  commands.addCommand(CommandIDs.wake, {
    label: sessionLabel('Wake', 'Wake a Hibernated Kernel Session…'),
    execute: async args => {
      const name = await sessionArg(args, 'Wake Session');
      if (name) {
        await reported(`Waking ${name}`, () => client.wakeSession(name));
        await model.refresh();
      }
    }
  });

  commands.addCommand(CommandIDs.shutdown, {
    label: sessionLabel('Shut Down', 'Shut Down a Kernel Session…'),
    execute: async args => {
      const name = await sessionArg(args, 'Shut Down Session');
      if (
        !name ||
        !(await confirm(
          'Shut Down Kernel Session',
          `Shut down ${name}? ${sharedText(name)}Its kernel stops and the session is deleted; notebooks attached to it lose their kernel. ${checkpointText(name, true)}`,
          'Shut Down'
        ))
      ) {
        return;
      }
      const done = await reported(`Shutting down ${name}`, async () => {
        await client.deleteSession(name);
        return true;
      });
      if (done) {
        notifySuccess(`Session ${name} was shut down.`);
      }
      await model.refresh();
      await refreshSpecs();
    }
  });

  commands.addCommand(CommandIDs.restore, {
    label: sessionLabel(
      'Restore a Checkpoint of',
      'Restore a Kernel Session Checkpoint…'
    ),
    execute: async args => {
      const name = await sessionArg(args, 'Restore Checkpoint');
      const checkpoint =
        name && (await checkpointArg(name, args, 'Restore Checkpoint'));
      if (
        !name ||
        !checkpoint ||
        !(await confirm(
          'Restore Checkpoint',
          `Restore ${checkpointTitle(checkpoint)} into ${name}? The session's variables become the checkpoint's ${checkpoint.variable_count ?? ''} variables; variables created since are removed.`,
          'Restore'
        ))
      ) {
        return;
      }
      const result = await reported(`Restoring ${name}`, () =>
        client.restoreCheckpoint(name, checkpoint.id)
      );
      if (result) {
        reportRestore(result);
      }
      await model.refresh();
    }
  });

  commands.addCommand(CommandIDs.fork, {
    label: sessionLabel(
      'Fork a Checkpoint of',
      'Fork a Kernel Session Checkpoint…'
    ),
    caption: "Start a new session with a checkpoint's variables",
    execute: async args => {
      const name = await sessionArg(args, 'Fork Checkpoint');
      const checkpoint =
        name && (await checkpointArg(name, args, 'Fork Checkpoint'));
      if (!name || !checkpoint) {
        return;
      }
      const into = await askName(
        'Fork Checkpoint',
        `A new session starts with the variables of ${checkpointTitle(checkpoint)}.`,
        argString(args, 'into') ?? `${name}-fork`,
        'Fork'
      );
      if (!into) {
        return;
      }
      const result = await reported(`Forking ${name} into ${into}`, () =>
        client.restoreCheckpoint(name, checkpoint.id, { into })
      );
      if (result) {
        reportRestore(result);
        await model.refresh();
        model.setExpanded(result.session.name, true);
        await refreshSpecs();
      }
    }
  });

  commands.addCommand(CommandIDs.deleteCheckpoint, {
    label: sessionLabel(
      'Delete a Checkpoint of',
      'Delete a Kernel Session Checkpoint…'
    ),
    execute: async args => {
      const name = await sessionArg(args, 'Delete Checkpoint');
      const checkpoint =
        name && (await checkpointArg(name, args, 'Delete Checkpoint'));
      if (
        !name ||
        !checkpoint ||
        !(await confirm(
          'Delete Checkpoint',
          `Delete ${checkpointTitle(checkpoint)} of ${name}? This cannot be undone.`,
          'Delete'
        ))
      ) {
        return;
      }
      await reported(`Deleting a checkpoint of ${name}`, () =>
        client.deleteCheckpoint(name, checkpoint.id)
      );
      await model.refresh();
    }
  });

  if (palette) {
    for (const command of [
      CommandIDs.open,
      CommandIDs.refresh,
      CommandIDs.create,
      CommandIDs.attach,
      CommandIDs.openConsole,
      CommandIDs.checkpoint,
      CommandIDs.restart,
      CommandIDs.interrupt,
      CommandIDs.wake,
      CommandIDs.shutdown,
      CommandIDs.restore,
      CommandIDs.fork,
      CommandIDs.deleteCheckpoint
    ]) {
      palette.addItem({ command, category: CATEGORY });
    }
  }
}

function reportRestore(result: IRestoreResult): void {
  const { restored, failed, removed } = result;
  const name = result.session.name;
  const extra = removed.length
    ? `, ${removed.length} removed (${removed.join(', ')})`
    : '';
  notifySuccess(
    `Session ${name}: ${restored.length} variables restored${extra}.`
  );
  if (failed.length) {
    notifyError(
      `Not restored in ${name}`,
      failed.map(f => `${f.name} (${f.reason})`).join(', ')
    );
  }
}
