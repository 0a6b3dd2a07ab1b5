// hermes-plugin browser guard, optional part loaded right after the core on pages with guarded writes:
// session switches, writes a re-apply triggers, picks that survive reloads and rebuilds.
// Behaviour and reasons: docs/browser-guard.md ("Session switches, re-apply writes and kept picks").
(() => {
'use strict';
const W = window, D = document, G = W.hermesGuard, X = G && G._ext;
// No core, a disabled core or an older one: nothing to extend, the page runs with the core alone.
if (!X || X.hooks.sessions) return;
X.hooks.sessions = true;

const { hooks, known, cfg, classify, setCurrent, sessionModel, notice } = X;
const { sameModel } = G._internals;
const PENDING = 'data-hermes-pending'; // marks the option shown while a session's model is being read
const PENDING_TEXT = "Loading this chat's model…";
const PICKS = 'hermes-guard:picks'; // sessionStorage: picks the page had not written yet, per session
const INTENT = 'x-hermes-intent';

const warn = e => console.warn('hermes-guard:', e);
const safely = f => { try { return f(); } catch (e) { warn(e); } };
const cur = () => X.at()[0];
const reapplying = () => X.at()[1] > 0;
const selects = () => [...D.querySelectorAll(cfg.modelSelect)].filter(n => n.options);
const group = (m, k) => safely(() => m.groups?.[k] && decodeURIComponent(m.groups[k]));

// ---- a write's session and model, as the core reads them ----

function parts(c, text) {
  const json = safely(() => text && JSON.parse(text));
  const at = spec => {
    const [kind, p] = String(spec).split(/:(.*)/);
    if (kind === 'path') return { value: group(c.m, p) };
    if (kind !== 'body' || !json || typeof json !== 'object') return {};
    const keys = p.split('.');
    const parent = keys.slice(0, -1).reduce((o, k) => o && typeof o === 'object' ? o[k] : undefined, json);
    const key = keys[keys.length - 1];
    return parent && typeof parent === 'object' ? { value: parent[key], set: v => { parent[key] = v; } } : {};
  };
  const model = at(c.e.model);
  const session = at(c.e.session).value;
  return { json, session: typeof session === 'number' ? String(session) : session, model: model.value, setModel: model.set };
}

// ---- after a session switch, until the new session's stored model is known ----

let switching = null;
const waiting = []; // senders of automatic writes held until the switched-to session's model is known

let switches = 0; // counts switches: a read started before the latest one is about an older session
function beginSwitch(s) {
  if (s == null || switching === s) return;
  if (switching != null && known.has(s)) endSwitch(); // switched on again, to a session already known
  // Only a switch away from a session the page showed: a first load has no previous model on screen.
  if (cur() == null || s === cur() || known.has(s)) return;
  switches++;
  // The core now re-applies nothing until this session's model is known; it learns it from the page's
  // own session response, so nothing is re-applied while the host still holds the previous session.
  setCurrent(s);
  switching = s;
  showPending(true);
  // Never longer than the guard waits for any read: then the writes go as they are, the server judges them.
  setTimeout(() => s === switching && endSwitch(), cfg.timeout);
}

// The previous session's model is not this one's: show "loading", silently (no event reaches the host).
// Kept on every frame until the model is known: a host still finishing the previous session's work
// (a late list, its own restore) must not put that session's model back on screen.
let looping = false;
function showPending(first) {
  if (switching == null) return void (looping = false);
  for (const sel of selects()) {
    if (first || !sel.querySelector(`[${PENDING}]`)) {
      const o = sel.querySelector(`[${PENDING}]`) || new Option(PENDING_TEXT, '');
      o.setAttribute(PENDING, '');
      sel.prepend(o);
      sel.setAttribute('aria-busy', 'true');
      notice(sel, PENDING_TEXT);
    }
    if (sel.value !== '') sel.value = '';
  }
  if (!first || !looping) requestAnimationFrame(() => safely(showPending));
  looping = true;
}

// The page's read failed or named no model: ask the plugin's own route rather than wait forever.
function readEnded(s, ok, startedAt) {
  // A late answer about the session the page left made the core show that one again: not so.
  if (switching != null && s !== switching && startedAt < switches) return setCurrent(switching);
  if (s !== switching) return;
  if (!ok) return endSwitch();
  queueMicrotask(() => s === switching && sessionModel(s, true).then(() => s === switching && endSwitch()));
}

function endSwitch() {
  const m = known.get(switching);
  switching = null;
  for (const sel of selects()) {
    sel.querySelector(`[${PENDING}]`)?.remove();
    sel.removeAttribute('aria-busy');
    // The stored model in place of "loading", still silently: the host's own load decides what follows.
    const o = m != null && [...sel.options].find(o => o.value === m) || [...sel.options].find(o => sameModel(o.value, m));
    if (o) sel.value = o.value;
  }
  for (const n of D.querySelectorAll('.hermes-notice')) if (n.textContent === PENDING_TEXT) n.remove();
  for (const send of waiting.splice(0)) safely(send);
}

// ---- picks kept across reloads ----

const picks = () => safely(() => JSON.parse(sessionStorage.getItem(PICKS) || '{}')) || {};
function savePick(s, m) {
  const all = picks();
  m == null ? delete all[s] : (all[s] = m);
  safely(() => sessionStorage.setItem(PICKS, JSON.stringify(all)));
}

// A pick the page never wrote before it was reloaded: shown again and handed to the host's own change
// handler as the user's, so the host writes it the way it writes any pick.
const checked = new Set(); // sessions whose stored model this page already compared with a kept pick
function resumePick() {
  const s = cur(), m = s != null && picks()[s];
  if (!m || checked.has(s) || !known.has(s) || G.pending().length) return;
  const sel = selects().find(x => [...x.options].some(o => o.value === m));
  if (!sel) return; // its option is not there yet: again when the lists settle
  checked.add(s);
  if (sameModel(known.get(s), m)) return savePick(s, null); // it did land
  X.setKnown(s, m);
  sel.value = m;
  for (const t of ['input', 'change']) sel.dispatchEvent(new Event(t, { bubbles: true }));
}

// ---- the core's hooks ----

const preferred = new Map(); // session -> the option value the user picked (its provider's spelling)
hooks.picked = value => {
  const s = cur();
  if (s == null) return;
  preferred.set(s, value);
  checked.add(s);
  savePick(s, value); // until the page writes it
};
// Two providers offering the same bare id: re-apply keeps the one the user chose.
hooks.prefer = m => {
  const p = preferred.get(cur());
  return p != null && sameModel(p, m) ? p : undefined;
};
hooks.known = s => {
  if (s === switching) endSwitch();
  if (s === cur()) queueMicrotask(() => safely(resumePick));
};
D.addEventListener('hermes:settled', () => safely(resumePick));

// ---- fetch ----

const absorbed = () => new Response('{}', {
  status: 200, headers: { 'Content-Type': 'application/json', 'X-Hermes-Answered': 'locally' },
});

function guardWrite(inner, self, input, init, c) {
  const text = typeof init?.body === 'string' ? init.body : null;
  const w = parts(c, text);
  const intent = String(new Headers(init?.headers).get(INTENT) || '').toLowerCase();
  const stored = known.get(w.session);
  // The host's own handler answering a re-apply: it restates the stored model, the server needs no write.
  if (reapplying() && intent !== 'user' && stored != null && sameModel(w.model, stored)) {
    D.dispatchEvent(new CustomEvent('hermes:write-absorbed', { detail: { session: w.session, model: w.model } }));
    return Promise.resolve(absorbed());
  }
  if (intent !== 'user') beginSwitch(w.session);
  // A write naming the switched-to session, or carrying the "loading" option's empty value.
  const held = switching != null && (w.session === switching || w.model === '');
  if (held && intent !== 'user' && text != null) {
    // Held until the session's stored model is known, then sent carrying it (never the previous session's).
    return new Promise((resolve, reject) => waiting.push(() => {
      const m = known.get(w.session);
      const body = m != null && w.setModel ? (w.setModel(m), JSON.stringify(w.json)) : text;
      inner.call(self, input, { ...init, body }).then(resolve, reject);
    }));
  }
  const pick = w.session != null && picks()[w.session];
  if (pick && sameModel(w.model, pick) && !intent) {
    savePick(w.session, null);
    // The write of the user's pick is the user's, however late the page sends it (a batched save, a
    // save after a reload), and it outlives a reload that follows it at once.
    const headers = new Headers(init?.headers);
    headers.set(INTENT, 'user');
    init = { ...init, headers, ...(text != null && text.length < 60000 && { keepalive: true }) };
  }
  return inner.call(self, input, init);
}

const inner = W.fetch;
W.fetch = function (input, init) {
  const c = safely(() => classify(init?.method || input?.method, input?.url || input));
  const s = c?.kind === 'session' && safely(() => group(c.m, 'session'));
  if (s) {
    const at = switches;
    safely(() => beginSwitch(s));
    return inner.apply(this, arguments).then(r => (safely(() => readEnded(s, r.ok, at)), r),
      e => { safely(() => readEnded(s, false, at)); throw e; });
  }
  if (c?.kind === 'write' && !(input instanceof Request)) {
    const out = safely(() => guardWrite(inner, this, input, init, c));
    if (out) return out;
  }
  return inner.apply(this, arguments);
};

// ---- XMLHttpRequest: a session read starts a switch too ----

const XP = W.XMLHttpRequest?.prototype, open = XP?.open;
if (open) XP.open = function (method, url) {
  safely(() => {
    const c = classify(method, url);
    const s = c?.kind === 'session' && group(c.m, 'session'), at = switches;
    if (!s) return;
    beginSwitch(s);
    this.addEventListener('loadend', () => safely(() => readEnded(s, this.status > 199 && this.status < 300, at)), { once: true });
  });
  return open.apply(this, arguments);
};
})();
