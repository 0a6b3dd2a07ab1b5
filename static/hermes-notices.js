// hermes-plugin notices: loaded by the guard script the first time it has something to tell the user.
// - "changed": the page changed the session's model without the user (its saved model is gone): a
//   dismissable notice with Undo, which restores the previous model through the plugin's guarded write.
// - "ask": the saved model is gone and there is a suggested replacement, or the page's automatic switch
//   would cost more: the user picks (the suggestion preselected) or keeps; nothing is written before.
// - "kept": the server kept the saved model over the page's change and the picker went back to it: a
//   dismissable line beside the picker says so.
// - "unavailable": the guard selected its placeholder for a model no list offers: a line beside it says why.
// Everything shown is text (textContent), never HTML. Behaviour: docs/browser-guard.md.
(() => {
'use strict';
const W = window, D = document;
if (W.hermesNotices) return;
const BOX = 'hermes-notice-box';
const LINE = 'hermes-notice'; // a status line beside the picker; the guard removes these when the picker recovers
const PLACEHOLDER = 'data-hermes-unavailable'; // the guard's option for a model no list offers
const STYLE = 'position:fixed;left:1em;bottom:1em;z-index:2147483647;max-width:32em;padding:.6em .8em;' +
  'background:#fff8c4;color:#222;border:1px solid #c9b400;border-radius:4px;font:13px/1.4 sans-serif';

const warn = e => console.warn('hermes-notices:', e);
const str = (v, d) => typeof v === 'string' && v ? v : d;
let prefix = '/hermes-plugin', modelSelect = '#modelSelect, [data-hermes-model]';
try {
  const c = JSON.parse(D.getElementById('hermes-plugin-config').textContent);
  prefix = str(c.prefix, prefix).replace(/\/+$/, '');
  modelSelect = str(c.modelSelect, modelSelect);
} catch (e) { warn(e); }

const queue = W.hermesNoticeQueue || (W.hermesNoticeQueue = []);
let seen = 0;
const boxes = new Map();     // session -> the notice or prompt shown for it
const answered = new Set();  // "session model" pairs the user already answered: not asked again

// The plugin's own session API; every answer is {ok, status, etag, json}.
async function call(s, tail, init) {
  const r = await fetch(`${prefix}/api/sessions/${encodeURIComponent(s)}/${tail}`, init);
  return { ok: r.ok, status: r.status, json: await r.json().catch(() => ({})) };
}
const post = (s, tail, version, body) => call(s, tail, {
  method: 'POST', headers: { 'Content-Type': 'application/json', 'If-Match': `"${version}"` },
  body: JSON.stringify(body || {}),
});

const money = n => '$' + (+n.toFixed(4));
const priceText = p => p ? `${money(p.input)} in / ${money(p.output)} out per million tokens` : '';
const total = p => p ? p.input + p.output : null;

function el(tag, props, ...children) {
  const n = Object.assign(D.createElement(tag), props);
  n.append(...children);
  return n;
}
function button(action, text) {
  const b = el('button', { type: 'button', textContent: text });
  b.dataset.hermesAction = action;
  b.style.marginLeft = '.5em';
  return b;
}

// One box per session, pinned to the page; a new one replaces the old.
function box(s, role) {
  boxes.get(s)?.remove();
  const n = el('div', { className: BOX }); // not .hermes-notice: the guard clears those when the picker recovers
  n.setAttribute('role', role);
  n.dataset.session = s;
  n.style.cssText = STYLE;
  D.body.append(n);
  boxes.set(s, n);
  return n;
}
function close(s, n) {
  n.remove();
  if (boxes.get(s) === n) boxes.delete(s);
}
function say(n, text, ...rest) {
  const dismiss = button('dismiss', '×');
  dismiss.setAttribute('aria-label', 'Dismiss');
  dismiss.onclick = () => close(n.dataset.session, n);
  n.replaceChildren(el('span', { className: 'hermes-notice-text', textContent: text }), ...rest, dismiss);
}

// A status line next to the picker (or pinned to the page when the select itself is hidden).
function line(sel, text, ...rest) {
  const n = el('span', { className: LINE, textContent: text }, ...rest);
  n.setAttribute('role', 'status');
  if (sel.nextElementSibling?.classList?.contains(LINE)) sel.nextElementSibling.remove();
  if (sel.getClientRects().length) return sel.after(n);
  n.style.cssText = 'position:fixed;left:1em;bottom:1em;z-index:2147483647;padding:.4em .8em;background:#fff8c4;color:#222;border:1px solid #c9b400;border-radius:4px;font:13px sans-serif';
  for (const old of D.querySelectorAll(`body > .${LINE}`)) old.remove();
  D.body.append(n);
}

// The server kept the saved model and the picker, which showed the refused one, went back to it.
async function kept(d) {
  const info = await d.info, G = W.hermesGuard, same = G._internals.sameModel, m = info.model;
  const sel = d.sel || [...D.querySelectorAll(modelSelect)]
    .find(x => x.options && same(x.value, d.model) && !same(x.value, G.state().model));
  if (!sel || d.session !== G.state().session || !str(m) || same(d.model, m)) return;
  // Only where the picker really went back; an unavailable model has its own notice.
  if (!same(sel.value, m) || ![...sel.options].some(o => !o.hasAttribute(PLACEHOLDER) && same(o.value, m))) return;
  const dismiss = button('dismiss', '×');
  dismiss.setAttribute('aria-label', 'Dismiss');
  line(sel, `Kept your saved model ${m} (${d.reason}): the change to ${d.model} was not saved.`, dismiss);
  dismiss.onclick = () => dismiss.parentNode.remove();
}

// The guard's placeholder for a model no list offers, unless the picker moved on before this loaded.
async function unavailable(d) {
  const o = d.sel.options[d.sel.selectedIndex];
  if (!o?.hasAttribute(PLACEHOLDER) || o.value !== d.model || W.hermesGuard.state().session !== d.session) return;
  line(d.sel, `Model ${d.model} is unavailable${d.why && ': ' + d.why}. Your saved choice was kept.`);
}

// After a write the server let through: "Model changed to X because Y is no longer offered — Undo".
async function changed(d) {
  const s = d.session;
  const log = await call(s, 'model-log');
  const entry = [...(log.json.entries || [])].reverse().find(e => e.new !== e.old);
  if (!entry || !str(entry.old) || !str(entry.new)) return;
  const why = entry.reason === 'model_absent' ? `because ${entry.old} is no longer offered`
    : `(was ${entry.old})`;
  const n = box(s, 'status'), undo = button('undo', 'Undo');
  undo.onclick = () => restore(s, n, entry);
  say(n, `Model changed to ${entry.new} ${why} — `, undo);
}

async function restore(s, n, entry) {
  const info = await call(s, 'model');
  if (info.json.model !== entry.new) return say(n, `The model has changed again (now ${info.json.model}); nothing was undone.`);
  const r = await post(s, 'model/undo', info.json.version);
  if (!r.ok) return say(n, `Could not undo: ${str(r.json.detail, 'HTTP ' + r.status)}`);
  offer(r.json.model);
  W.hermesGuard?.learn?.(s, r.json.model, r.json.version);
  say(n, `Restored ${r.json.model}.`);
}

// A restored model no list offers still needs an option, or the picker would go on showing the other
// one: the guard's own "unavailable" placeholder, which it selects and removes on a session switch.
function offer(m) {
  for (const sel of D.querySelectorAll(modelSelect)) {
    if (!sel.options || [...sel.options].some(o => o.value === m)) continue;
    const o = new Option(m + ' (unavailable)', m);
    o.setAttribute('data-hermes-unavailable', '');
    sel.append(o);
  }
}

// The saved model is gone (with a suggested replacement) or the page's switch would cost more: ask.
async function ask(d) {
  const s = d.session, info = (await call(s, 'model')).json;
  const stored = str(info.model);
  if (!stored || info.availability !== 'absent' || answered.has(`${s} ${stored}`)) return;
  if (boxes.get(s)?.isConnected && boxes.get(s).dataset.asking === stored) return;
  const catalog = await fetch(`${prefix}/api/catalog`).then(r => r.json()).catch(() => ({}));
  const models = new Map();
  for (const p of catalog.providers || []) for (const m of p.models || []) if (!models.has(m.id)) models.set(m.id, m);
  const wanted = str(info.replacement) || (models.has(d.model) && d.model) || models.keys().next().value;
  if (!wanted) return;
  const n = box(s, 'dialog');
  n.dataset.asking = stored;
  const sel = el('select', { className: 'hermes-notice-choice' });
  sel.setAttribute('aria-label', 'Replacement model');
  for (const [id, m] of models) {
    const suffix = id === info.replacement ? ' (suggested)' : '';
    sel.append(el('option', { value: id, textContent: id + suffix + (m.price ? ' — ' + priceText(m.price) : '') }));
  }
  sel.value = wanted;
  const cost = el('span', { className: 'hermes-notice-cost' });
  const costs = () => {
    const p = models.get(sel.value)?.price, was = info.price;
    cost.textContent = p && was && total(p) > total(was)
      ? ` It costs more: ${priceText(p)} instead of ${priceText(was)}.` : '';
  };
  sel.onchange = costs;
  costs();
  const change = button('switch', 'Switch'), keep = button('keep', `Keep ${stored}`);
  const tried = models.get(d.model)?.price;
  const why = tried && info.price && total(tried) > total(info.price)
    ? ` The page tried to switch to ${d.model}, which costs more; it was not saved.` : '';
  say(n, `Your saved model ${stored} is no longer offered.${why} Switch to: `, sel, cost, change, keep);
  keep.onclick = () => { answered.add(`${s} ${stored}`); close(s, n); };
  change.onclick = async () => {
    const model = sel.value, pricier = cost.textContent !== '';
    const reason = model === info.replacement && !pricier ? 'replacement' : pricier ? 'price_accepted' : 'pick';
    const r = await post(s, 'model', info.version, { model, reason });
    if (!r.ok) return say(n, `Could not switch: ${str(r.json.detail, 'HTTP ' + r.status)}`);
    answered.add(`${s} ${stored}`);
    delete n.dataset.asking;
    W.hermesGuard?.learn?.(s, r.json.model, r.json.version);
    say(n, `Model changed to ${r.json.model}.`);
  };
}

function show(d) {
  if (!d || !str(d.session)) return;
  ({ changed, kept, unavailable }[d.note] || ask)(d).catch(warn);
}

W.hermesNotices = () => { while (seen < queue.length) show(queue[seen++]); };
W.hermesNotices();
})();
