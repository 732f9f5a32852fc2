/**
 * The kernel-sessions JupyterLab extension: the "Kernel Sessions" sidebar with its commands,
 * and a status-bar item naming the session of the current notebook.
 */
import { ILayoutRestorer } from '@jupyterlab/application';
import type {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';
import { kernelIcon } from '@jupyterlab/ui-components';

import { CommandIDs, registerCommands } from './commands';
import { SessionsModel } from './model';
import { notifyError } from './notify';
import { KernelSessionsPanel } from './panel';
import { KernelSessionsClient } from './request';
import { SessionStatusItem } from './status';

const panelPlugin: JupyterFrontEndPlugin<void> = {
  id: 'kernel-sessions:panel',
  description:
    'The Kernel Sessions sidebar: sessions, variables, checkpoints and the pool.',
  autoStart: true,
  optional: [ICommandPalette, INotebookTracker, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    notebooks: INotebookTracker | null,
    restorer: ILayoutRestorer | null
  ): void => {
    const client = new KernelSessionsClient(app.serviceManager.serverSettings);
    let panel: KernelSessionsPanel | null = null;
    const model = new SessionsModel({
      source: client,
      events: app.serviceManager.events.stream,
      isActive: () => !!panel?.isVisible,
      onError: message =>
        notifyError('Kernel sessions are not available', message)
    });
    panel = new KernelSessionsPanel(model, app.commands);
    panel.title.icon = kernelIcon;
    app.shell.add(panel, 'left', { rank: 350 });
    restorer?.add(panel, 'kernel-sessions');

    registerCommands(
      {
        app,
        client,
        model,
        notebooks,
        showPanel: () => {
          if (panel) {
            app.shell.activateById(panel.id);
          }
        }
      },
      palette
    );
    notebooks?.currentChanged.connect(() =>
      app.commands.notifyCommandChanged(CommandIDs.attach)
    );
  }
};

const statusPlugin: JupyterFrontEndPlugin<void> = {
  id: 'kernel-sessions:status',
  description:
    'A status-bar item naming the kernel session of the current notebook.',
  autoStart: true,
  requires: [IStatusBar, INotebookTracker],
  activate: (
    app: JupyterFrontEnd,
    statusBar: IStatusBar,
    notebooks: INotebookTracker
  ): void => {
    const item = new SessionStatusItem(notebooks, app.commands);
    statusBar.registerStatusItem('kernel-sessions:status', {
      item,
      align: 'left',
      rank: 4,
      isActive: () => item.isActive,
      activeStateChanged: item.activeChanged
    });
  }
};

export default [panelPlugin, statusPlugin];
