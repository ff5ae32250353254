/**
 * The live view of a served API: its URL, version, workers, requests, errors, drift, and the
 * candidate beside it (shadow agreement or canary share). The numbers come from the API's own
 * /metadata, /metrics, /drift and /shadow, read by the core (`GET nbdeploy/jobs/ID/live`).
 */
import { LiveStatus } from './models';
import { el } from './dom';

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

export function renderLive(s: LiveStatus): HTMLElement {
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
      : `${s.drift} over ${s.drift_rows} row(s)` + (s.drifted.length ? ` — drifted: ${s.drifted.join(', ')}` : '');
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
  return el(
    'div',
    { class: 'nbdeploy-live', 'data-up': 'true', 'data-version': s.version ?? '', 'data-requests': String(s.requests) },
    title,
    table
  );
}
