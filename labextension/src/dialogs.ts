/**
 * Dialogs: new session (name + kernelspec), a name for a fork, confirmations, pickers.
 *
 * Name inputs carry the server's naming rule as their `pattern`, so the dialog's OK button is
 * disabled until the name is valid (JupyterLab's Dialog checks `:invalid`).
 */
import { Dialog, InputDialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import type { ISessionCreate } from './types';
import { NAME_PATTERN } from './types';

const NAME_HINT =
  'Lower-case letters, digits, ".", "_" and "-"; starts with a letter or digit; at most 63 characters.';

/** A kernelspec the user can pick for a new session. */
export interface ISpecChoice {
  name: string;
  displayName: string;
}

function nameInput(value: string): HTMLInputElement {
  const input = document.createElement('input');
  input.className = 'jp-mod-styled jp-KernelSessions-nameInput';
  input.type = 'text';
  input.required = true;
  input.pattern = NAME_PATTERN;
  input.maxLength = 63;
  input.placeholder = 'e.g. etl';
  input.spellcheck = false;
  input.value = value;
  input.title = NAME_HINT;
  return input;
}

function labelled(text: string, control: HTMLElement): HTMLLabelElement {
  const label = document.createElement('label');
  label.className = 'jp-KernelSessions-dialogField';
  const span = document.createElement('span');
  span.textContent = text;
  label.append(span, control);
  return label;
}

/** The body of the "New Session" dialog. */
export class NewSessionBody
  extends Widget
  implements Dialog.IBodyWidget<ISessionCreate>
{
  constructor(
    specs: ReadonlyArray<ISpecChoice>,
    defaultSpec: string | null,
    name = '',
    error: string | null = null
  ) {
    super();
    this.addClass('jp-KernelSessions-dialog');
    this._name = nameInput(name);
    this._spec = document.createElement('select');
    this._spec.className = 'jp-mod-styled jp-KernelSessions-specSelect';
    for (const spec of specs) {
      const option = document.createElement('option');
      option.value = spec.name;
      option.textContent = spec.displayName;
      option.selected = spec.name === defaultSpec;
      this._spec.append(option);
    }
    const hint = document.createElement('p');
    hint.className = 'jp-KernelSessions-hint';
    hint.textContent = NAME_HINT;
    this.node.append(
      labelled('Name', this._name),
      hint,
      labelled('Kernel', this._spec)
    );
    if (error) {
      const refusal = document.createElement('p');
      refusal.className = 'jp-KernelSessions-dialogError';
      refusal.textContent = error;
      this.node.append(refusal);
    }
  }

  getValue(): ISessionCreate {
    const value: ISessionCreate = { name: this._name.value.trim() };
    if (this._spec.value) {
      value.kernel_name = this._spec.value;
    }
    return value;
  }

  /** The name input (the dialog focuses it). */
  get nameNode(): HTMLInputElement {
    return this._name;
  }

  private _name: HTMLInputElement;
  private _spec: HTMLSelectElement;
}

/**
 * Ask for a new session's name and kernelspec; null when cancelled. `previous` and `error`
 * show the dialog again after the server refused an answer: what was typed, and why.
 */
export async function askNewSession(
  specs: ReadonlyArray<ISpecChoice>,
  defaultSpec: string | null,
  previous: ISessionCreate | null = null,
  error: string | null = null
): Promise<ISessionCreate | null> {
  const body = new NewSessionBody(
    specs,
    previous?.kernel_name ?? defaultSpec,
    previous?.name ?? '',
    error
  );
  const result = await showDialog({
    title: 'New Kernel Session',
    body,
    focusNodeSelector: 'input',
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Create' })]
  });
  if (!result.button.accept || !result.value) {
    return null;
  }
  return result.value;
}

/** The body of a dialog asking for one session name. */
class NameBody extends Widget implements Dialog.IBodyWidget<string> {
  constructor(prompt: string, value: string) {
    super();
    this.addClass('jp-KernelSessions-dialog');
    this._input = nameInput(value);
    const text = document.createElement('p');
    text.textContent = prompt;
    this.node.append(text, labelled('Name', this._input));
  }

  getValue(): string {
    return this._input.value.trim();
  }

  private _input: HTMLInputElement;
}

/** Ask for a session name (e.g. of a fork); null when cancelled. */
export async function askName(
  title: string,
  prompt: string,
  value: string,
  accept: string
): Promise<string | null> {
  const result = await showDialog({
    title,
    body: new NameBody(prompt, value),
    focusNodeSelector: 'input',
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: accept })]
  });
  return result.button.accept && result.value ? result.value : null;
}

/** Ask before something destructive; true when confirmed. */
export async function confirm(
  title: string,
  message: string,
  accept: string
): Promise<boolean> {
  const result = await showDialog({
    title,
    body: message,
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: accept })]
  });
  return result.button.accept;
}

/** Let the user pick one of `items` (used when a palette command has no argument). */
export async function pick(
  title: string,
  label: string,
  items: string[]
): Promise<string | null> {
  if (items.length === 0) {
    return null;
  }
  const result = await InputDialog.getItem({ title, label, items });
  return result.button.accept && result.value ? result.value : null;
}
