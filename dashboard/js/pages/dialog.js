// dialog.js - a modal confirmation (<dialog>: focus stays inside it,
// Escape cancels), resolving to true when confirmed.
import {h} from '../dom.js';

export function confirmDialog({title, text, extra, confirm, danger}) {
  return new Promise(resolve => {
    const opener = document.activeElement;
    const yes = h('button', {type: 'button', id: 'confirm-yes', class: danger ? 'danger' : ''}, confirm);
    const no = h('button', {type: 'button', id: 'confirm-no', class: 'secondary'}, 'Cancel');
    const dlg = h('dialog', {id: 'confirm', 'aria-labelledby': 'confirm-title', 'aria-describedby': 'confirm-text'},
      h('h2', {id: 'confirm-title'}, title),
      h('p', {id: 'confirm-text'}, text),
      extra || null,
      h('div', {class: 'buttons'}, yes, no));
    document.body.appendChild(dlg);
    const close = (v) => {
      dlg.close();
      dlg.remove();
      if (opener && document.contains(opener)) opener.focus();
      resolve(v);
    };
    yes.addEventListener('click', () => close(true));
    no.addEventListener('click', () => close(false));
    dlg.addEventListener('cancel', (ev) => { ev.preventDefault(); close(false); });
    dlg.showModal();
    (extra ? dlg.querySelector('select, input') : no).focus();
  });
}
