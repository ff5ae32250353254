/**
 * The Deploy panel: the handoff-readiness checklist of the active notebook, the job
 * buttons, and the live progress, log and result of the current job.
 *
 * It holds no logic of its own: the checklist comes from `GET nbdeploy/readiness`
 * and every button starts a job of the server extension (see `request.ts`). The
 * Versions section lists the notebook's registered versions (`GET nbdeploy/releases`);
 * its Promote and Rollback buttons move the aliases (`POST nbdeploy/releases`) once the
 * user confirms. The option fields (`forms.ts`) are the CLI's options; while a Serve job
 * runs, the live view (`live.ts`) shows what its API is doing, how its answers score against
 * the labels sent back, and opens its drift report in a tab (the `nbdeploy:open-drift-report`
 * command).
 */
import { CommandRegistry } from '@lumino/commands';
import { Widget } from '@lumino/widgets';
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { NotebookPanel } from '@jupyterlab/notebook';

import { Item, Job, JobKind, JobRequest, Readiness, ReleaseRequest, Releases } from './models';
import {
  NbdeployRequestError,
  getCandidates,
  getJob,
  getLive,
  getLog,
  getPerformance,
  getParameters,
  getReadiness,
  getReleases,
  listBundles,
  listJobs,
  moveAlias,
  startJob,
  stopJob
} from './request';
import { el } from './dom';
import { BatchFields, BuildFields, ParameterFields, ServeFields, numberOrNull } from './forms';
import { renderLive } from './live';

const MARK: Record<string, string> = {
  ok: '✓',
  warning: '!',
  missing: '○',
  error: '✗'
};
const TITLES: Record<JobKind, string> = {
  run: 'Run',
  reproduce: 'Reproduce',
  build: 'Build bundle',
  verify: 'Verify',
  serve: 'Serve',
  batch: 'Batch'
};
const POLL_MS = 700;
const LIVE_MS = 1500;

export class DeployPanel extends Widget {
  constructor(private readonly commands: CommandRegistry) {
    super();
    this.id = 'nbdeploy-panel';
    this.addClass('nbdeploy-panel');
    this.title.caption = 'Deploy';
    this._header = el('div', { class: 'nbdeploy-header' });
    this._checklist = el('div', { class: 'nbdeploy-checklist' });
    this._buttons = el('div', { class: 'nbdeploy-buttons' });
    this._job = el('div', { class: 'nbdeploy-job' });
    this._live = el('div', { class: 'nbdeploy-live-box' });
    this._versions = el('div', { class: 'nbdeploy-versions' });
    const batch = el('button', { class: 'jp-Button nbdeploy-button', 'data-action': 'batch' }, 'Run batch');
    batch.onclick = () => void this.start('batch');
    this._batch = new BatchFields(batch);
    const options = el(
      'details',
      { class: 'nbdeploy-options', open: '' },
      el('summary', {}, 'Options'),
      this._params.node,
      this._build.node,
      this._serve.node,
      this._batch.node
    );
    this.node.append(
      el('h2', { class: 'nbdeploy-title' }, 'Deploy'),
      this._header,
      this._checklist,
      this._buttons,
      this._job,
      this._live,
      options,
      this._versions
    );
    this._renderButtons();
    this._renderHeader();
  }

  /** Follow another notebook (or none). */
  setNotebook(panel: NotebookPanel | null): void {
    if (this._notebook === panel) {
      return;
    }
    this._notebook?.context.saveState.disconnect(this._onSaved, this);
    this._notebook = panel;
    panel?.context.saveState.connect(this._onSaved, this);
    this._readiness = null;
    this._renderHeader();
    void this.refresh().then(() => this._reattach());
  }

  /** After a page reload, follow the job still running for this notebook or its bundle. */
  private async _reattach(): Promise<void> {
    if (this._current || !this.notebookPath) {
      return;
    }
    try {
      const paths = [this.notebookPath, this._bundlePath()];
      const running = (await listJobs()).filter(
        j => j.state === 'running' && paths.includes(j.path)
      );
      if (running.length && !this._current) {
        this._follow(running[running.length - 1]);
      }
    } catch {
      // the checklist already shows request errors
    }
  }

  get notebookPath(): string | null {
    return this._notebook?.context.path ?? null;
  }

  /** Re-read the checklist of the current notebook. */
  async refresh(): Promise<void> {
    const path = this.notebookPath;
    if (!path) {
      this._readiness = null;
      this._checklist.replaceChildren(
        el('p', { class: 'nbdeploy-empty' }, 'Open a notebook to see its handoff checklist.')
      );
      this._updateButtons();
      return;
    }
    try {
      const r = await getReadiness(path);
      if (path === this.notebookPath) {
        this._readiness = r;
        this._renderChecklist(r);
      }
    } catch (e) {
      this._checklist.replaceChildren(this._error(e));
    }
    this._updateButtons();
    await Promise.all([this._refreshOptions(path), this._refreshVersions()]);
  }

  /** The option fields of this notebook: its parameters, the last build's models, the bundles. */
  private async _refreshOptions(path: string): Promise<void> {
    const [params, candidates, bundles] = await Promise.all([
      getParameters(path).catch(() => null),
      getCandidates(path).catch(() => null),
      listBundles().catch(() => [])
    ]);
    if (path !== this.notebookPath) {
      return;
    }
    this._params.render(params);
    this._build.render(path, candidates);
    this._serve.render(bundles, this._bundlePath());
  }

  // -- versions (the model registry) --------------------------------------------
  private async _refreshVersions(): Promise<void> {
    const path = this.notebookPath;
    if (!path) {
      this._versions.replaceChildren();
      return;
    }
    try {
      const r = await getReleases(path);
      if (path === this.notebookPath) {
        this._renderVersions(r);
      }
    } catch (e) {
      const none = e instanceof NbdeployRequestError && e.status === 404;
      this._versions.replaceChildren(
        el('h3', { class: 'nbdeploy-versions-title' }, 'Versions'),
        none
          ? el('p', { class: 'nbdeploy-empty' }, 'No registered versions yet: build a bundle.')
          : this._error(e)
      );
    }
  }

  private _renderVersions(r: Releases): void {
    this._releases = r;
    const champion = r.versions.find(v => v.aliases.includes('champion'));
    const rollback = el(
      'button',
      { class: 'jp-Button nbdeploy-button', 'data-action': 'rollback' },
      'Rollback champion'
    );
    rollback.disabled = !r.history.some(m => m.alias === 'champion' && m.to_version !== champion?.version);
    rollback.onclick = () => void this._move({ path: this.notebookPath ?? '', action: 'rollback' });
    const table = el('table', { class: 'nbdeploy-versions-table' });
    table.append(
      el('tr', {}, ...['version', 'alias', 'verified', ''].map(h => el('th', {}, h)))
    );
    for (const v of r.versions) {
      const promote = el(
        'button',
        { class: 'jp-Button nbdeploy-button', 'data-action': 'promote', 'data-version': v.version },
        'Promote'
      );
      promote.disabled = v.aliases.includes('champion');
      promote.onclick = () =>
        void this._move({ path: this.notebookPath ?? '', action: 'promote', version: v.version });
      const verified = v.verified === null ? '—' : v.verified ? '✓' : '✗';
      table.append(
        el(
          'tr',
          {
            class: 'nbdeploy-version',
            'data-version': v.version,
            'data-aliases': v.aliases.join(','),
            title: `built ${v.created} from ${v.notebook}`
          },
          el('td', {}, v.version),
          el('td', { class: 'nbdeploy-aliases' }, v.aliases.join(', ')),
          el('td', { title: v.verify_summary ?? 'not verified' }, verified),
          el('td', {}, promote)
        )
      );
    }
    const last = r.history[r.history.length - 1];
    const note = last
      ? el(
          'p',
          { class: 'nbdeploy-last-move' },
          `Last move: ${last.alias} ${last.from_version ?? '—'} → ${last.to_version} ` +
            `(${last.action} by ${last.user}${last.forced ? ', forced' : ''}, ${last.time})`
        )
      : null;
    this._versions.replaceChildren(
      el('h3', { class: 'nbdeploy-versions-title' }, `Versions of ${r.name}`),
      rollback,
      table,
      note ?? '',
      this._moveMessage ?? ''
    );
    this._moveMessage = null;
  }

  /** Ask before an alias moves: it changes what is live for everyone who serves `@champion`. */
  private async _confirm(request: ReleaseRequest, r: Releases): Promise<boolean> {
    const alias = request.alias ?? 'champion';
    const now = r.versions.find(v => v.aliases.includes(alias))?.version ?? null;
    const promote = request.action === 'promote';
    const title = promote
      ? `${request.force ? 'Force-promote' : 'Promote'} version ${request.version} to ${alias}?`
      : `Roll ${alias} back?`;
    const body = promote
      ? `${r.name}@${alias}: ${now ?? '—'} → ${request.version}` +
        (request.force ? '. It has no passing verify; the history records this promote as forced.' : '')
      : `${r.name}@${alias} goes back from ${now ?? '—'} to the version it pointed at before.`;
    const answer = await showDialog({
      title,
      body,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: promote ? 'Promote' : 'Roll back' })]
    });
    return answer.button.accept;
  }

  /** Promote or roll back; a refused promote offers to force it (which the history records). */
  private async _move(request: ReleaseRequest): Promise<void> {
    if (this._releases && !(await this._confirm(request, this._releases))) {
      return;
    }
    try {
      const m = await moveAlias(request);
      this._moveMessage = el(
        'div',
        { class: 'nbdeploy-result nbdeploy-ok nbdeploy-move-result' },
        `${m.alias}: ${m.from_version ?? '—'} → ${m.to_version}${m.forced ? ' (forced)' : ''}`
      );
    } catch (e) {
      const box = this._error(e);
      if (e instanceof NbdeployRequestError && e.status === 409 && request.action === 'promote') {
        const force = el(
          'button',
          { class: 'jp-Button nbdeploy-button', 'data-action': 'force-promote' },
          'Promote anyway (recorded as forced)'
        );
        force.onclick = () => void this._move({ ...request, force: true });
        box.append(el('div', {}, force));
      }
      this._moveMessage = box;
    }
    await this._refreshVersions();
  }

  private _onSaved(_: unknown, state: string): void {
    if (state === 'completed') {
      void this.refresh();
    }
  }

  // -- rendering -------------------------------------------------------------
  private _renderHeader(): void {
    const path = this.notebookPath;
    const refresh = el('button', { class: 'nbdeploy-refresh jp-Button', title: 'Refresh' }, '↻');
    refresh.onclick = () => void this.refresh();
    this._header.replaceChildren(
      el('span', { class: 'nbdeploy-notebook' }, path ?? 'no notebook'),
      refresh
    );
  }

  private _renderChecklist(r: Readiness): void {
    const list = el('ul', { class: 'nbdeploy-items' });
    for (const item of r.items) {
      list.append(this._renderItem(item));
    }
    const verdict = el(
      'p',
      { class: `nbdeploy-verdict nbdeploy-${r.ready ? 'ok' : 'warning'}` },
      r.ready ? 'Ready to hand off' : 'Not ready yet'
    );
    const stale = r.stale
      ? el('p', { class: 'nbdeploy-stale' }, 'The notebook file changed since it was last captured.')
      : null;
    this._checklist.replaceChildren(verdict, stale ?? '', list);
  }

  private _renderItem(item: Item): HTMLElement {
    const li = el('li', {
      class: `nbdeploy-item nbdeploy-${item.status}`,
      'data-key': item.key,
      'data-status': item.status
    });
    li.append(
      el('span', { class: 'nbdeploy-mark' }, MARK[item.status] ?? '?'),
      el('span', { class: 'nbdeploy-item-title' }, item.title),
      el('span', { class: 'nbdeploy-summary' }, item.summary)
    );
    if (item.action && item.status !== 'ok') {
      li.append(el('div', { class: 'nbdeploy-action' }, '→ ' + item.action));
    }
    if (item.details.length) {
      const details = el('details', { class: 'nbdeploy-details' });
      const hasError = item.details.some(d => d.status === 'error');
      if (hasError) {
        details.open = true;
      }
      details.append(el('summary', {}, `${item.details.length} detail(s)`));
      const table = el('table', {});
      for (const d of item.details) {
        const label: Node = d.path
          ? this._link(d.label, d.path)
          : document.createTextNode(d.label);
        table.append(
          el(
            'tr',
            { class: `nbdeploy-detail nbdeploy-${d.status}` },
            el('td', {}, label),
            el('td', {}, d.value)
          )
        );
        if (d.note) {
          table.append(
            el(
              'tr',
              { class: `nbdeploy-note-row nbdeploy-${d.status}` },
              el('td', { class: 'nbdeploy-note', colspan: '2' }, d.note)
            )
          );
        }
      }
      details.append(table);
      li.append(details);
    }
    return li;
  }

  private _link(text: string, path: string, cls = ''): HTMLElement {
    const a = el('a', { href: '#', class: `nbdeploy-link ${cls}`, title: path, 'data-path': path }, text);
    a.onclick = (ev: Event) => {
      ev.preventDefault();
      void this._open(path);
    };
    return a;
  }

  private async _open(path: string): Promise<void> {
    if (path.endsWith('.md')) {
      // rendered read-only: opening a bundle file in an editor would add a checkpoint to it
      await this.commands.execute('nbdeploy:open-readme', { path });
    } else if (/\.[a-z]+$/i.test(path.split('/').pop() ?? '')) {
      await this.commands.execute('docmanager:open', { path });
    } else {
      await this.commands.execute('filebrowser:go-to-path', { path, dontShowBrowser: false });
    }
  }

  private _renderButtons(): void {
    const mk = (action: string, label: string, onclick: () => void): HTMLButtonElement => {
      const b = el('button', { class: 'jp-Button nbdeploy-button', 'data-action': action }, label);
      b.onclick = onclick;
      return b;
    };
    const row1 = el('div', { class: 'nbdeploy-row' });
    for (const kind of ['run', 'reproduce', 'build', 'verify', 'serve'] as JobKind[]) {
      row1.append(mk(kind, TITLES[kind], () => void this.start(kind)));
    }
    row1.append(mk('stop', 'Stop', () => void this.stop()));
    const row2 = el('div', { class: 'nbdeploy-row' });
    row2.append(
      mk('verify-container', 'Verify in container', () => void this.start('verify', true))
    );
    row2.append(
      mk('mark-parameters', 'Mark selected cell as parameters', () =>
        void this.commands.execute('nbdeploy:mark-parameters')
      )
    );
    this._buttons.replaceChildren(row1, row2);
    this._updateButtons();
  }

  private _updateButtons(): void {
    const running = this._current?.state === 'running';
    const hasNb = !!this.notebookPath;
    const bundle = this._bundlePath();
    const buttons = [...Array.from(this._buttons.querySelectorAll('button')), ...Array.from(this._batch.node.querySelectorAll('button'))];
    for (const b of buttons) {
      const action = b.dataset.action;
      let enabled = hasNb && !running;
      if (action === 'verify' || action === 'verify-container' || action === 'serve') {
        enabled = enabled && !!bundle;
      } else if (action === 'stop') {
        enabled = running;
      }
      b.disabled = !enabled;
    }
  }

  /** The bundle of the last build job, else the notebook's last bundle from the checklist. */
  private _bundlePath(): string | null {
    const built = this._lastBundle;
    if (built) {
      return built;
    }
    const item = this._readiness?.items.find(i => i.key === 'bundle');
    return item?.details.find(d => d.label === 'bundle')?.path ?? null;
  }

  // -- jobs --------------------------------------------------------------------
  async start(kind: JobKind, container = false): Promise<void> {
    const nb = this._notebook;
    if (!nb) {
      return;
    }
    if (nb.context.model.dirty) {
      await nb.context.save();
    }
    const path = kind === 'verify' || kind === 'serve' ? this._bundlePath() : nb.context.path;
    if (!path) {
      return;
    }
    try {
      const job = await startJob(this._request(kind, path, container));
      this._follow(job);
    } catch (e) {
      this._job.replaceChildren(this._error(e));
    }
  }

  /** The job request: the CLI's options for this kind, read from the option fields. */
  private _request(kind: JobKind, path: string, container: boolean): JobRequest {
    const request: JobRequest = { kind, path, container, force: kind === 'build' };
    if (kind === 'run' || kind === 'build') {
      request.parameters = this._params.values();
    }
    if (kind === 'build') {
      request.model = this._build.model.value || null;
      request.output = this._build.output.value.trim() || null;
    } else if (kind === 'serve') {
      request.workers = numberOrNull(this._serve.workers);
      const candidate = this._serve.candidate.value;
      if (candidate && this._serve.mode.value === 'canary') {
        request.canary = candidate;
        request.canary_percent = numberOrNull(this._serve.percent);
      } else if (candidate) {
        request.shadow = candidate;
      }
    } else if (kind === 'batch') {
      request.grid = this._batch.grid.value.trim() || null;
      request.workers = numberOrNull(this._batch.workers);
    }
    return request;
  }

  async stop(): Promise<void> {
    const current = this._current;
    if (current) {
      try {
        const stopped = await stopJob(current.id);
        if (this._current?.id === current.id) {
          // another job may have started while this one stopped: it is the one shown now
          this._update(stopped);
        }
      } catch (e) {
        this._job.replaceChildren(this._error(e));
      }
    }
  }

  private _follow(job: Job): void {
    this._current = job;
    this._logText = '';
    this._logOffset = 0;
    this._update(job);
    window.clearTimeout(this._timer);
    const tick = async (): Promise<void> => {
      if (this._current?.id !== job.id) {
        return;
      }
      try {
        const chunk = await getLog(job.id, this._logOffset);
        const now = await getJob(job.id);
        if (this._current?.id !== job.id) {
          // a newer job was started while this poll waited: showing this one again would take
          // the panel (and its live view) back to a job the user has left
          return;
        }
        this._logText += chunk.text;
        this._logOffset = chunk.next_offset;
        this._update(now);
        if (now.state !== 'running' && chunk.complete) {
          await this._finished(now);
          return;
        }
      } catch (e) {
        if (this._current?.id === job.id) {
          this._job.append(this._error(e));
        }
        return;
      }
      this._timer = window.setTimeout(() => void tick(), POLL_MS);
    };
    this._timer = window.setTimeout(() => void tick(), POLL_MS);
  }

  private async _finished(job: Job): Promise<void> {
    if (job.state === 'succeeded' && job.kind === 'build' && job.result?.bundle) {
      this._lastBundle = job.result.bundle;
      if (job.result.readme) {
        await this._open(job.result.readme);
      }
    }
    this._updateButtons();
    await this.refresh();
  }

  private _update(job: Job): void {
    this._current = job;
    const pct = job.progress === null ? null : Math.round(job.progress * 100);
    const progress = el('progress', { class: 'nbdeploy-progress', max: '100' });
    if (pct !== null) {
      progress.value = pct;
    }
    const head = el(
      'div',
      { class: 'nbdeploy-job-head' },
      el('strong', {}, TITLES[job.kind]),
      ` ${job.path} — `,
      el('span', { class: `nbdeploy-state nbdeploy-state-${job.state}` }, job.state)
    );
    const step = el('div', { class: 'nbdeploy-step' }, job.step || (job.state === 'running' ? 'starting…' : ''));
    const log = el('pre', { class: 'nbdeploy-log' }, this._logText.split('\n').slice(-200).join('\n'));
    const parts: (Node | string)[] = [head];
    if (job.state === 'running') {
      parts.push(progress);
    }
    parts.push(step);
    const result = this._result(job);
    if (result) {
      parts.push(result);
    }
    if (job.error) {
      parts.push(el('div', { class: 'nbdeploy-job-error nbdeploy-error' }, job.error));
    }
    const logBox = el('details', { class: 'nbdeploy-log-box' }, el('summary', {}, 'Log'), log);
    logBox.open = this._logOpen; // the job re-renders on every poll: keep what the user chose
    logBox.addEventListener('toggle', () => (this._logOpen = logBox.open));
    parts.push(logBox);
    this._job.replaceChildren(...parts);
    this._job.dataset.state = job.state;
    this._job.dataset.kind = job.kind;
    this._job.dataset.id = job.id;
    log.scrollTop = log.scrollHeight;
    this._updateButtons();
    this._watchLive(job);
  }

  /** While a Serve job's API answers, poll its live status; clear the view when it stops. */
  private _watchLive(job: Job): void {
    const serving = job.kind === 'serve' && job.state === 'running' && !!job.result?.url;
    if (!serving) {
      if (job.kind !== 'serve' || job.state !== 'running') {
        window.clearTimeout(this._liveTimer);
        this._liveJob = null;
        this._live.replaceChildren();
      }
      return;
    }
    if (this._liveJob === job.id) {
      return;
    }
    this._liveJob = job.id;
    const tick = async (): Promise<void> => {
      if (this._liveJob !== job.id) {
        return;
      }
      try {
        const [status, perf] = await Promise.all([
          getLive(job.id),
          getPerformance(job.id).then(
            p => ({ performance: p, performanceError: null }),
            e => ({ performance: null, performanceError: this._message(e) })
          )
        ]);
        const openDrift =
          status.up && status.drift !== null
            ? () => void this.commands.execute('nbdeploy:open-drift-report', { job: job.id, url: status.url })
            : null;
        if (this._liveJob === job.id) {
          this._live.replaceChildren(renderLive(status, { ...perf, openDrift }));
        }
      } catch (e) {
        if (this._liveJob === job.id) {
          this._live.replaceChildren(this._error(e));
        }
      }
      if (this._liveJob === job.id) {
        this._liveTimer = window.setTimeout(() => void tick(), LIVE_MS);
      }
    };
    void tick();
  }

  private _result(job: Job): HTMLElement | null {
    const r = job.result;
    if (!r) {
      return null;
    }
    const box = el('div', { class: `nbdeploy-result nbdeploy-${r.ok ? 'ok' : 'error'}` });
    if (r.summary && !(!r.ok && r.summary === job.error)) {
      // a failed job's summary is its error, shown once below
      box.append(el('div', { class: 'nbdeploy-result-summary' }, r.summary));
    }
    if (r.bundle) {
      box.append(el('div', {}, 'Bundle: ', this._link(r.bundle, r.bundle, 'nbdeploy-bundle-link')));
    }
    if (r.readme) {
      box.append(el('div', {}, 'README: ', this._link(r.readme, r.readme, 'nbdeploy-readme-link')));
    }
    if (r.url) {
      box.append(
        el('div', {}, 'API: ', el('a', { href: r.url, target: '_blank', class: 'nbdeploy-api-url' }, r.url))
      );
    }
    if (r.curl) {
      box.append(el('pre', { class: 'nbdeploy-curl' }, r.curl));
    }
    return box;
  }

  private _message(e: unknown): string {
    return e instanceof NbdeployRequestError ? e.message + (e.hint ? ` (${e.hint})` : '') : String(e);
  }

  private _error(e: unknown): HTMLElement {
    return el('div', { class: 'nbdeploy-error nbdeploy-request-error' }, this._message(e));
  }

  dispose(): void {
    window.clearTimeout(this._timer);
    window.clearTimeout(this._liveTimer);
    super.dispose();
  }

  private _notebook: NotebookPanel | null = null;
  private _readiness: Readiness | null = null;
  private _current: Job | null = null;
  private _lastBundle: string | null = null;
  private _logText = '';
  private _logOffset = 0;
  private _logOpen = true;
  private _timer = 0;
  private readonly _header: HTMLElement;
  private readonly _checklist: HTMLElement;
  private readonly _buttons: HTMLElement;
  private readonly _job: HTMLElement;
  private readonly _versions: HTMLElement;
  private readonly _live: HTMLElement;
  private readonly _params = new ParameterFields();
  private readonly _build = new BuildFields();
  private readonly _serve = new ServeFields();
  private readonly _batch: BatchFields;
  private _liveJob: string | null = null;
  private _liveTimer = 0;
  private _moveMessage: HTMLElement | null = null;
  private _releases: Releases | null = null;
}
