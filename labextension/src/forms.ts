/**
 * The options of the panel's jobs: the notebook's parameters (typed from its parameters
 * cell), Build's model and output folder, Serve's workers and candidate, Batch's grid.
 *
 * Each field is the CLI option of the same name; the values are sent as they are typed and
 * checked by the core on the server (a bad one comes back as a 4xx naming the field).
 */
import { BundleInfo, Candidates, ParamSpec, Parameters } from './models';
import { el, field } from './dom';

/** The text a default is shown as, in the form the CLI's `-p NAME VALUE` accepts. */
function asText(value: unknown): string {
  if (value === null || value === undefined) {
    return '';
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** The parameters cell as inputs; `values()` gives the ones changed from their defaults. */
export class ParameterFields {
  readonly node = el('fieldset', { class: 'nbdeploy-params' });

  /** Show the notebook's parameters; keeps what the user typed when the cell did not change. */
  render(p: Parameters | null): void {
    const key = JSON.stringify(p?.params ?? null);
    if (key === this._key) {
      return;
    }
    this._key = key;
    this._inputs = [];
    const legend = el('legend', {}, 'Parameters');
    if (!p || p.cell === null) {
      this.node.replaceChildren(
        legend,
        el('p', { class: 'nbdeploy-empty' }, 'No parameters cell: mark one to run with other values.')
      );
      return;
    }
    const rows = p.params.map(spec => this._field(spec));
    this.node.replaceChildren(legend, ...rows);
  }

  private _field(spec: ParamSpec): HTMLElement {
    let input: HTMLInputElement;
    if (spec.type === 'bool') {
      input = el('input', { type: 'checkbox', 'data-param': spec.name });
      input.checked = spec.default === true;
    } else if (spec.type === 'int' || spec.type === 'float') {
      input = el('input', {
        type: 'number',
        step: spec.type === 'int' ? '1' : 'any',
        'data-param': spec.name
      });
      input.value = asText(spec.default);
    } else {
      input = el('input', { type: 'text', 'data-param': spec.name });
      input.value = asText(spec.default);
    }
    input.classList.add('nbdeploy-input');
    input.title = `${spec.type}, default ${asText(spec.default) || '""'}`;
    this._inputs.push({ spec, input });
    return field(spec.name, input, spec.type);
  }

  /** NAME: VALUE of the parameters whose value differs from the cell's default. */
  values(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const { spec, input } of this._inputs) {
      const value = spec.type === 'bool' ? String(input.checked) : input.value;
      const base = spec.type === 'bool' ? String(spec.default === true) : asText(spec.default);
      if (value !== base) {
        out[spec.name] = value;
      }
    }
    return out;
  }

  private _key = '';
  private _inputs: { spec: ParamSpec; input: HTMLInputElement }[] = [];
}

/** Build's model (one of the candidates the last build found) and output folder. */
export class BuildFields {
  readonly model = el('select', { class: 'nbdeploy-input', 'data-option': 'model' });
  readonly output = el('input', { type: 'text', class: 'nbdeploy-input', 'data-option': 'output' });
  readonly note = el('p', { class: 'nbdeploy-candidates-note' });
  readonly node = el(
    'fieldset',
    { class: 'nbdeploy-build-options' },
    el('legend', {}, 'Build'),
    field('Model', this.model),
    this.note,
    field('Output folder', this.output)
  );

  render(notebook: string | null, c: Candidates | null): void {
    this.output.placeholder = notebook ? notebook.replace(/\.ipynb$/, '-bundle') : '';
    const chosen = this.model.value;
    const options = [el('option', { value: '' }, "the notebook's model")];
    for (const m of c?.candidates ?? []) {
      const cls = m.model_class.split('.').pop() ?? m.model_class;
      options.push(
        el(
          'option',
          { value: m.variable, title: m.model_class },
          `${m.variable} — ${cls}${m.score ? ` (${m.score})` : ''}`
        )
      );
    }
    this.model.replaceChildren(...options);
    if ((c?.candidates ?? []).some(m => m.variable === chosen)) {
      this.model.value = chosen;
    }
    const n = c?.candidates.length ?? 0;
    this.note.textContent = n
      ? `The last build found ${n} models: choose one and build again` +
        (c?.current ? ' (its run is reused).' : ' (the notebook changed, so it runs again).')
      : '';
    this.note.hidden = !n;
  }
}

/** Serve's workers, and a candidate bundle served beside it as a shadow or a canary. */
export class ServeFields {
  readonly workers = el('input', {
    type: 'number',
    min: '1',
    max: '64',
    step: '1',
    placeholder: '1',
    class: 'nbdeploy-input',
    'data-option': 'workers'
  });
  readonly candidate = el('select', { class: 'nbdeploy-input', 'data-option': 'candidate' });
  readonly mode = el(
    'select',
    { class: 'nbdeploy-input', 'data-option': 'mode' },
    el('option', { value: 'shadow' }, 'shadow (sees every request, never answers)'),
    el('option', { value: 'canary' }, 'canary (answers a share of requests)')
  );
  readonly percent = el('input', {
    type: 'number',
    min: '1',
    max: '100',
    step: 'any',
    placeholder: '10',
    class: 'nbdeploy-input',
    'data-option': 'canary-percent'
  });
  readonly node = el(
    'fieldset',
    { class: 'nbdeploy-serve-options' },
    el('legend', {}, 'Serve'),
    field('Workers', this.workers),
    field('Candidate bundle', this.candidate),
    field('Candidate mode', this.mode),
    field('Canary share (%)', this.percent)
  );

  render(bundles: BundleInfo[], served: string | null): void {
    const chosen = this.candidate.value;
    const options = [el('option', { value: '' }, 'none')];
    for (const b of bundles.filter(b => b.path !== served)) {
      options.push(el('option', { value: b.path }, `${b.path} (v${b.version})`));
    }
    this.candidate.replaceChildren(...options);
    if (bundles.some(b => b.path === chosen)) {
      this.candidate.value = chosen;
    }
  }
}

/** Batch: the notebook over a grid of parameters (a YAML file), on local Dask workers. */
export class BatchFields {
  readonly grid = el('input', {
    type: 'text',
    placeholder: 'grid.yaml',
    class: 'nbdeploy-input',
    'data-option': 'grid'
  });
  readonly workers = el('input', {
    type: 'number',
    min: '1',
    max: '64',
    step: '1',
    placeholder: '2',
    class: 'nbdeploy-input',
    'data-option': 'batch-workers'
  });
  readonly node: HTMLFieldSetElement;

  constructor(run: HTMLButtonElement) {
    this.node = el(
      'fieldset',
      { class: 'nbdeploy-batch-options' },
      el('legend', {}, 'Batch'),
      field('Grid file', this.grid, 'relative to the Jupyter root'),
      field('Batch workers', this.workers),
      run
    );
  }
}

/** A number field's value, or null when it is empty (the CLI's default then). */
export function numberOrNull(input: HTMLInputElement): number | null {
  return input.value.trim() === '' ? null : Number(input.value);
}
