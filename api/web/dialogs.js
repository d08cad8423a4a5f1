// Modal dialogs: opening and closing (Escape closes every one of them natively), and the
// small ones that only collect input: new document, share, delete, renew token.

import { $, el, clear } from './dom.js';

export function openDialog(dialog, focus) {
  for (const error of dialog.querySelectorAll('.error')) error.textContent = '';
  if (!dialog.open) dialog.showModal();
  if (focus) focus.focus();
}

export function closeDialog(dialog) {
  if (dialog.open) dialog.close();
}

/** Every `[data-close]` button closes its dialog; a click on the backdrop does too. */
export function wireDialogs() {
  for (const dialog of document.querySelectorAll('dialog')) {
    for (const button of dialog.querySelectorAll('[data-close]')) {
      button.addEventListener('click', () => closeDialog(dialog));
    }
    dialog.addEventListener('click', (event) => {
      if (event.target === dialog) closeDialog(dialog);
    });
  }
}

/** Runs `action` for a dialog's form, showing its error in the dialog. */
function onSubmit(form, errorNode, action) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const submit = form.querySelector('[type=submit]');
    submit.disabled = true;
    errorNode.textContent = '';
    try {
      await action();
    } catch (error) {
      errorNode.textContent = error.message;
    } finally {
      submit.disabled = false;
    }
  });
}

/** Asks for a title; `create(title)` makes the document. */
export function wireNewDocument(create) {
  const dialog = $('new-dialog');
  const title = $('new-title');
  onSubmit($('new-form'), $('new-error'), async () => {
    if (!title.value.trim()) throw new Error('A title is needed.');
    await create(title.value.trim());
    closeDialog(dialog);
  });
  return () => {
    title.value = '';
    openDialog(dialog, title);
  };
}

/** Confirms a deletion; `remove()` deletes. */
export function wireDelete(remove) {
  const dialog = $('delete-dialog');
  onSubmit($('delete-form'), $('delete-error'), async () => {
    await remove();
    closeDialog(dialog);
  });
  return (title) => {
    $('delete-title').textContent = title;
    openDialog(dialog, dialog.querySelector('[data-close]'));
  };
}

/**
 * Edits the collaborators; `save(patch)` receives a JSON Merge Patch of them (`null`
 * removes someone) and applies it.
 */
export function wireShare(save) {
  const dialog = $('share-dialog');
  const rows = $('share-rows');
  const user = $('share-user');
  const role = $('share-role');
  const error = $('share-error');
  let original = {};
  let current = {};

  const render = () => {
    clear(rows);
    const people = Object.keys(current).sort();
    if (!people.length) {
      rows.append(el('tr', {}, el('td', { colspan: '3', class: 'muted' }, 'Not shared with anyone yet.')));
    }
    for (const person of people) {
      const select = el('select', { 'aria-label': `Role of ${person}`, dataset: { user: person } },
        ['editor', 'viewer'].map((r) => el('option', { value: r, selected: current[person] === r }, r)));
      select.addEventListener('change', () => {
        current[person] = select.value;
      });
      rows.append(el('tr', {},
        el('th', { scope: 'row' }, person),
        el('td', {}, select),
        el('td', {}, el('button', {
          type: 'button',
          class: 'quiet',
          'aria-label': `Remove ${person}`,
          onclick: () => {
            delete current[person];
            render();
            user.focus();
          },
        }, 'Remove'))));
    }
  };

  const add = () => {
    const id = user.value.trim();
    error.textContent = '';
    if (!id) {
      error.textContent = 'Type the user id of the person to add.';
      user.focus();
      return;
    }
    if (id === dialog.dataset.owner) {
      error.textContent = `${id} owns this document already.`;
      return;
    }
    current[id] = role.value;
    user.value = '';
    render();
    user.focus();
  };
  $('share-add').addEventListener('click', add);
  user.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') {
      event.preventDefault();
      add();
    }
  });

  onSubmit($('share-form'), error, async () => {
    if (user.value.trim()) add();
    const patch = {};
    for (const person of Object.keys(original)) {
      if (!(person in current)) patch[person] = null;
    }
    for (const [person, r] of Object.entries(current)) {
      if (original[person] !== r) patch[person] = r;
    }
    if (Object.keys(patch).length) await save(patch);
    closeDialog(dialog);
  });

  return (doc) => {
    original = { ...(doc.collaborators || {}) };
    current = { ...original };
    dialog.dataset.owner = doc.owner;
    user.value = '';
    render();
    openDialog(dialog, user);
  };
}

/** Takes a new token for the same user; `use(token)` checks and applies it. */
export function wireToken(use) {
  const dialog = $('token-dialog');
  const input = $('token-input');
  onSubmit($('token-form'), $('token-error'), async () => {
    await use(input.value.trim());
    input.value = '';
    closeDialog(dialog);
  });
  return (user) => {
    $('token-user').textContent = user;
    openDialog(dialog, input);
  };
}
