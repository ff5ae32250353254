/** A tiny DOM builder shared by the panel's modules. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string | null)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') {
      node.className = v;
    } else {
      node.setAttribute(k, v);
    }
  }
  for (const c of children) {
    if (c !== null) {
      node.append(c);
    }
  }
  return node;
}

/**
 * A labelled field: the label wraps its control, and the control's accessible name is the
 * label alone (not the note beside it), so screen readers and tests find it by that name.
 */
export function field(label: string, control: HTMLElement, note = ''): HTMLLabelElement {
  control.setAttribute('aria-label', label);
  return el(
    'label',
    { class: 'nbdeploy-field' },
    el('span', { class: 'nbdeploy-field-label' }, label),
    control,
    note ? el('span', { class: 'nbdeploy-field-note' }, note) : null
  );
}
