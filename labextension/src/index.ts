/**
 * nbdeploy's JupyterLab extension: the Deploy panel in the left sidebar, which follows
 * the active notebook, the "Mark as parameters cell" command (palette and cell
 * context menu), and the tabs it opens: a bundle's README and a served API's drift report.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget, showErrorMessage } from '@jupyterlab/apputils';
import { IRenderMimeRegistry, MimeModel } from '@jupyterlab/rendermime';
import { INotebookTracker } from '@jupyterlab/notebook';
import { LabIcon, ToolbarButton } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { DeployPanel } from './panel';
import { getDriftReport } from './request';

const PARAMETERS_TAG = 'parameters'; // papermill's tag

const deployIcon = new LabIcon({
  name: 'nbdeploy:deploy',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">' +
    '<path class="jp-icon3" fill="#616161" d="M12 2 4 6v6c0 5 3.4 9.3 8 10 4.6-.7 8-5 8-10V6l-8-4zm-1 14-4-4 1.4-1.4L11 13.2l5.6-5.6L18 9l-7 7z"/>' +
    '</svg>'
});

export namespace CommandIDs {
  export const markParameters = 'nbdeploy:mark-parameters';
  export const openPanel = 'nbdeploy:open-panel';
  export const openReadme = 'nbdeploy:open-readme';
  export const openDriftReport = 'nbdeploy:open-drift-report';
}

/**
 * A tab showing a serve job's drift report. The page comes from the server extension and is
 * shown in an iframe sandboxed with no permission at all: no script runs, nothing reaches this
 * origin, and the page (inline styles and SVG) needs nothing more.
 */
class DriftReport extends Widget {
  constructor(readonly job: string, readonly url: string) {
    super();
    this.addClass('nbdeploy-drift-report');
    this._frame = document.createElement('iframe');
    this._frame.setAttribute('sandbox', '');
    this._frame.setAttribute('title', `Drift report of the API at ${url}`);
    this.node.append(this._frame);
  }

  /** Fetch the report again (the API's drift moves with every request it answers). */
  async refresh(): Promise<void> {
    try {
      this._frame.srcdoc = await getDriftReport(this.job);
      this.node.dataset.loaded = String(Date.now());
    } catch (e) {
      await showErrorMessage('Drift report', e instanceof Error ? e.message : String(e));
    }
  }

  private readonly _frame: HTMLIFrameElement;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbdeploy:plugin',
  description: 'Deploy panel: handoff-readiness checklist, run, build, verify and serve a notebook.',
  autoStart: true,
  requires: [INotebookTracker, IRenderMimeRegistry],
  optional: [ICommandPalette, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    rendermime: IRenderMimeRegistry,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null
  ) => {
    const panel = new DeployPanel(app.commands);
    panel.title.icon = deployIcon;
    app.shell.add(panel, 'left', { rank: 1000 });
    restorer?.add(panel, 'nbdeploy-panel');

    tracker.currentChanged.connect((_, nb) => panel.setNotebook(nb));
    void app.restored.then(() => panel.setNotebook(tracker.currentWidget));

    app.commands.addCommand(CommandIDs.markParameters, {
      label: 'Mark as Parameters Cell (nbdeploy)',
      caption: "Tag the selected cell `parameters` (papermill) and remove the tag from other cells",
      isEnabled: () => !!tracker.activeCell && tracker.activeCell.model.type === 'code',
      execute: async () => {
        const nb = tracker.currentWidget;
        const active = tracker.activeCell;
        if (!nb || !active || !nb.content.model) {
          return;
        }
        for (const cell of nb.content.widgets) {
          const tags = (cell.model.getMetadata('tags') as string[] | undefined) ?? [];
          const has = tags.includes(PARAMETERS_TAG);
          if (cell === active && !has) {
            cell.model.setMetadata('tags', [...tags, PARAMETERS_TAG]);
          } else if (cell !== active && has) {
            const rest = tags.filter(t => t !== PARAMETERS_TAG);
            if (rest.length) {
              cell.model.setMetadata('tags', rest);
            } else {
              cell.model.deleteMetadata('tags');
            }
          }
        }
        await nb.context.save(); // jobs and the checklist read the file
        await panel.refresh();
      }
    });

    app.commands.addCommand(CommandIDs.openPanel, {
      label: 'Open the Deploy Panel (nbdeploy)',
      execute: () => app.shell.activateById(panel.id)
    });

    app.commands.addCommand(CommandIDs.openReadme, {
      label: 'Open a Bundle README (nbdeploy)',
      execute: async args => {
        const path = String(args.path ?? '');
        const file = await app.serviceManager.contents.get(path, {
          type: 'file',
          format: 'text',
          content: true
        });
        const renderer = rendermime.createRenderer('text/markdown');
        await renderer.renderModel(
          new MimeModel({ data: { 'text/markdown': String(file.content) } })
        );
        renderer.addClass('nbdeploy-readme');
        const widget = new MainAreaWidget({ content: renderer });
        widget.id = `nbdeploy-readme-${Date.now()}`;
        widget.title.label = file.name;
        widget.title.caption = path;
        widget.title.closable = true;
        app.shell.add(widget, 'main');
        app.shell.activateById(widget.id);
      }
    });

    const driftTabs = new Map<string, MainAreaWidget<DriftReport>>();
    app.commands.addCommand(CommandIDs.openDriftReport, {
      label: 'Open the Drift Report of a Served API (nbdeploy)',
      execute: async args => {
        const job = String(args.job ?? '');
        let widget = driftTabs.get(job);
        if (!widget || widget.isDisposed) {
          const content = new DriftReport(job, String(args.url ?? ''));
          widget = new MainAreaWidget({ content });
          widget.id = `nbdeploy-drift-${job}`;
          widget.title.label = 'Drift report';
          widget.title.caption = `Drift report of the API at ${content.url}`;
          widget.title.closable = true;
          widget.toolbar.addItem(
            'refresh',
            new ToolbarButton({
              label: 'Refresh',
              tooltip: 'Fetch the drift report again',
              onClick: () => void content.refresh()
            })
          );
          driftTabs.set(job, widget);
          app.shell.add(widget, 'main');
        }
        app.shell.activateById(widget.id);
        await widget.content.refresh();
      }
    });

    app.contextMenu.addItem({
      command: CommandIDs.markParameters,
      selector: '.jp-Notebook .jp-CodeCell',
      rank: 20
    });
    if (palette) {
      palette.addItem({ command: CommandIDs.markParameters, category: 'nbdeploy' });
      palette.addItem({ command: CommandIDs.openPanel, category: 'nbdeploy' });
    }
  }
};

export default plugin;
