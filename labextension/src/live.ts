/**
 * The live view of a served API: its URL, version, workers, requests, errors, drift, and the
 * candidate beside it (shadow agreement or canary share). The numbers come from the API's own
 * /metadata, /metrics, /drift and /shadow, read by the core (`GET nbdeploy/jobs/ID/live`).
 * Below them: each version's live metric against training, from the labels sent back to the
 * API's /feedback (`GET nbdeploy/jobs/ID/performance`), and the button that opens the drift
 * report page in a tab.
 */
import { LiveStatus, Performance, PerformanceVersion } from './models';
import { el } from './dom';

/** What the live view shows beside the status: the performance report (or why there is none). */
export interface LiveExtras {
  performance: Performance | null;
  performanceError: string | null;
  openDrift: (() => void) | null; // null: the API has no drift report (no training profile)
}

function metric(x: number | null | undefined): string {
  return x === null || x === undefined ? '—' : x.toFixed(3);
}

function change(x: number | undefined): string {
  return x === undefined ? '' : `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(3)}`;
}

/** One row per version and metric, narrow enough for the sidebar: version, metric, live, training, rows. */
function performanceTable(p: Performance): HTMLTableElement {
  const head = el(
    'tr',
    {},
    ...['Version', 'Metric', 'Live', 'Training', 'Rows'].map(h => el('th', { scope: 'col' }, h))
  );
  const table = el(
    'table',
    { class: 'nbdeploy-performance-table', 'aria-label': 'Live metric against training, per version' },
    el('thead', {}, head)
  );
  const body = el('tbody');
  for (const v of p.versions) {
    for (const name of Object.keys(v.live)) {
      body.append(versionRow(v, name));
    }
  }
  table.append(body);
  return table;
}

function versionRow(v: PerformanceVersion, name: string): HTMLTableRowElement {
  const delta = v.change[name];
  const worse = delta !== undefined && (name === 'accuracy' ? delta < 0 : delta > 0);
  const trained = name in v.training;
  return el(
    'tr',
    {
      'data-version': v.version,
      'data-metric': name,
      class: worse ? 'nbdeploy-warning' : '',
      title:
        `v${v.version} (${v.served_as.join(', ')}), ${v.kind}: ${v.labelled_rows} labelled row(s) in ` +
        `${v.labelled_requests} request(s)` +
        (delta !== undefined ? `; ${name} changed by ${change(delta)} since training` : '')
    },
    el('td', {}, `v${v.version}`),
    el('td', {}, name),
    el('td', {}, metric(v.live[name])),
    el('td', trained ? {} : { title: 'the bundle recorded no such metric at training' }, trained ? metric(v.training[name]) : '—'),
    el('td', { class: 'nbdeploy-performance-rows' }, String(v.labelled_rows))
  );
}

function performanceCell(extras: LiveExtras): HTMLElement {
  const p = extras.performance;
  if (!p) {
    return el('span', { class: 'nbdeploy-error' }, extras.performanceError ?? 'no report');
  }
  const labelled = p.versions.reduce((n, v) => Math.max(n, v.labelled_rows), 0);
  const box = el('div', {
    class: 'nbdeploy-performance',
    'data-labels': String(p.labels),
    'data-labelled': String(labelled)
  });
  if (!p.labels) {
    box.append('no labels yet (POST them to /feedback with the x-request-id of each answer)');
    return box;
  }
  const unjoined = p.unjoined ? `, ${p.unjoined} not found in the request log` : '';
  box.append(el('div', { class: 'nbdeploy-performance-summary' }, `${p.labels} label(s), ${p.joined} joined${unjoined}`));
  if (p.versions.length) {
    box.append(performanceTable(p));
  }
  return box;
}

function pct(x: number | null): string {
  return x === null ? '—' : `${(100 * x).toFixed(1)}%`;
}

function row(key: string, label: string, value: string, cls = ''): HTMLTableRowElement {
  return el(
    'tr',
    { 'data-key': key, class: cls },
    el('th', { scope: 'row' }, label),
    el('td', { class: 'nbdeploy-live-value' }, value)
  );
}

export function renderLive(s: LiveStatus, extras: LiveExtras | null = null): HTMLElement {
  const title = el('h3', { class: 'nbdeploy-live-title' }, 'Live API');
  if (!s.up) {
    return el(
      'div',
      { class: 'nbdeploy-live', 'data-up': 'false' },
      title,
      el('p', { class: 'nbdeploy-error' }, `${s.url} is not answering: ${s.error ?? 'no reason given'}`)
    );
  }
  const table = el('table', { class: 'nbdeploy-live-table' });
  const url = el('a', { href: s.url, target: '_blank', class: 'nbdeploy-live-url' }, s.url);
  const urlRow = row('url', 'URL', '');
  urlRow.lastElementChild?.append(url);
  const driftText =
    s.drift === null
      ? 'no report (the bundle has no training profile)'
      : `${s.drift} over ${s.drift_rows} row(s)` +
        (s.drifted.length ? ` — drifted: ${s.drifted.join(', ')}` : '') +
        (s.not_measured?.length ? ` — not measured: ${s.not_measured.join(', ')} (free text)` : '');
  const driftClass = s.drift === 'drift' ? 'nbdeploy-error' : s.drift === 'moderate' ? 'nbdeploy-warning' : '';
  table.append(
    urlRow,
    row('version', 'Version', `${s.name ?? ''} v${s.version ?? '?'}`),
    row('workers', 'Workers', String(s.workers ?? '—')),
    row('requests', 'Requests', String(s.requests)),
    row('errors', 'Errors', String(s.errors), s.errors ? 'nbdeploy-error' : ''),
    row('drift', 'Drift', driftText, driftClass)
  );
  if (s.canary) {
    const c = s.canary;
    table.append(
      row('canary', 'Canary', `v${c.version}, ${c.percent}% configured; answered ${c.answered} (${pct(c.share)})`)
    );
  }
  if (s.shadow) {
    const sh = s.shadow;
    table.append(
      row(
        'shadow',
        'Shadow',
        `v${sh.version} saw ${sh.requests} request(s), ${sh.rows} row(s); agreement ${pct(sh.agreement)}` +
          (sh.errors ? `, ${sh.errors} error(s)` : '')
      )
    );
  }
  let drift: HTMLButtonElement | null = null;
  if (extras) {
    const open = extras.openDrift;
    drift = el(
      'button',
      {
        class: 'jp-Button nbdeploy-button nbdeploy-drift-button',
        'data-action': 'drift-report',
        title: open
          ? 'Open the per-feature drift report (training against served) in a tab'
          : 'The bundle has no training profile: there is no drift report'
      },
      'Drift report'
    );
    drift.disabled = !open;
    if (open) {
      drift.onclick = () => open();
    }
  }
  return el(
    'div',
    { class: 'nbdeploy-live', 'data-up': 'true', 'data-version': s.version ?? '', 'data-requests': String(s.requests) },
    title,
    table,
    extras
      ? el(
          'section',
          { class: 'nbdeploy-performance-box', 'aria-label': 'Performance' },
          el('h4', { class: 'nbdeploy-live-subtitle' }, 'Performance'),
          performanceCell(extras)
        )
      : null,
    drift
  );
}
