// hermes-plugin browser guard: keeps a chat page from overwriting a session's saved model while its
// model lists are still loading. Behaviour and reasons: docs/browser-guard.md. This is the readable
// source; the package serves a minified build of it.
(() => {
'use strict';
const W = window, D = document, nonce = D.currentScript?.nonce;
// Injected by the extension and also included by the host: the second copy must not wrap fetch again.
if (W.hermesGuard) return;

const INTENT_HEADER = 'X-Hermes-Intent';
const PLACEHOLDER = 'data-hermes-unavailable'; // marks the option the guard adds for an unavailable model
const NOTICE = 'hermes-notice';
const GESTURE_MS = 1500; // how long a click or key press explains the write that follows it
const PICK_MS = 3000;
const MARK_MS = 2000;
const RECHECK_FRAMES = 15;
const MAX_REAPPLY = 50; // a host that keeps resetting the value must not hang the page

// ---- small pure helpers (also unit-tested through _internals) ----

const now = () => performance.now();
const warn = e => console.warn('hermes-guard:', e);
// Every guard step runs through this: a guard that breaks the host is worse than no guard.
const safely = f => { try { return f(); } catch (e) { warn(e); } };
const str = (v, dflt) => typeof v === 'string' && v ? v : dflt;
const decode = s => safely(() => decodeURIComponent(s)) ?? s;

// Python's (?P<name>...) and (?P=name) as JS named groups; escaped characters are left alone.
function toJsRegex(src) {
  return new RegExp(String(src).replace(/\\.|\(\?P<(\w+)>|\(\?P=(\w+)\)/g,
    (m, name, ref) => name ? `(?<${name}>` : ref ? `\\k<${ref}>` : m));
}

// The config's path language: dotted keys, `[]` walks a list; only own keys of plain objects are data.
function walk(obj, path) {
  return String(path).split('.').reduce((values, seg) => {
    const many = seg.endsWith('[]'), key = many ? seg.slice(0, -2) : seg;
    return values.flatMap(v => {
      if (key) v = v && typeof v === 'object' && !Array.isArray(v) && Object.hasOwn(v, key) ? v[key] : undefined;
      return many ? (Array.isArray(v) ? v : []) : v === undefined ? [] : [v];
    });
  }, [obj]);
}
const first = ([v]) => typeof v === 'number' ? String(v) : str(v);

function parseConfig(text) {
  const c = JSON.parse(text);
  if (c?.constructor !== Object) throw Error('config is not an object');
  const out = {
    prefix: str(c.prefix, '/hermes-plugin').replace(/\/+$/, ''),
    ws: str(c.ws),
    picker: str(c.picker),
    modelSelect: str(c.modelSelect, '#modelSelect, [data-hermes-model]'),
    timeout: c.fetchTimeoutMs > 0 ? +c.fetchTimeoutMs : 20000,
  };
  D.querySelector(out.modelSelect); // a broken selector disables the guard now, not inside the host's events
  for (const kind of ['writes', 'live', 'static', 'sessions'])
    out[kind] = [].concat(c[kind] || []).flatMap(e => safely(() => str(e.url) && [{ ...e, kind, re: toJsRegex(e.url) }]) || []);
  // Alias rules: regexes whose `model` group is the id the session stores (`@deepseek:x` -> `x`).
  out.aliases = [].concat(c.aliases || []).flatMap(src => safely(() => [toJsRegex(src)]) || []);
  return out;
}

// The intent of one write. `user` wins on any sign of a person; `choice` is the page-state rule.
function decideIntent(c) {
  const header = String(c.header || '').toLowerCase();
  const within = (t, ms) => t != null && c.now - t <= ms;
  if (header === 'user' || header === 'auto') return header; // the host's own word wins
  if (within(c.markAt, MARK_MS) || within(c.gestureAt, GESTURE_MS) || c.named) return 'user';
  if (c.proposed != null && c.proposed === c.pick?.value && within(c.pick.at, PICK_MS)) return 'user';
  return c.choice ? 'user' : 'auto';
}

// ---- state: everything lives in this closure ----

const pending = new Map();  // catalog key -> fetches in flight
const waiters = [];         // whenSettled() resolvers
const held = [];            // senders of automatic writes waiting for the catalogs
const known = new Map();    // session -> stored model
const versions = new Map(); // session -> version of the known model (an older one never wins)
const pickAt = new Map();   // session -> time of the user's last pick (a later pick beats an earlier load)
const toldAt = new Map();   // session -> lookup count when learn() told its model (an older lookup is stale)
const serverInfo = new Map(); // model -> {provider, aliases} as the server resolved them
const originalFetch = W.fetch;
let cfg, cur = null, pick, gestureAt, pointer, markAt, unloading, unavailable, applying = false;
let budget = 0, frames = 0, asks = 0, observer;

const stored = () => known.get(cur);
const inPicker = () => now() - gestureAt <= GESTURE_MS;

function expose(off) {
  W.hermesGuard = Object.freeze({
    pending: () => [...pending.keys()],
    whenSettled: () => new Promise(r => pending.size ? waiters.push(r) : r()),
    userIntent: () => { markAt = now(); },
    state: () => ({ ...off, session: cur, model: stored() ?? null, held: held.length }),
    // The notices script's writes; the sessions part's new session (`shown`: the page now shows it).
    learn: (s, m, v, shown) => { shown && setCurrent(s); toldAt.set(s, ++asks); setKnown(s, m, +v); s === cur && reapply(); },
    _internals: { toJsRegex, walk, parseConfig, decideIntent, canonical, sameModel },
  });
}

let pageSession;
try {
  const el = D.getElementById('hermes-plugin-config');
  cfg = parseConfig(el.textContent);
  pageSession = str(el.dataset?.session); // the page's own route names the session it shows
} catch (e) {
  // No usable config: wrap nothing and say why; the page runs as without the guard.
  warn(e);
  return expose({ disabled: e.message });
}

const emit = (name, detail = {}) => D.dispatchEvent(new CustomEvent('hermes:' + name, { detail }));
const group = (m, k) => (k = m.groups?.[k]) && decode(k);

// ---- model ids spelled differently ----

// {model, provider} of an id under the first alias rule that matches, else the id itself.
function canonical(id) {
  for (const re of cfg?.aliases || []) {
    const m = re.exec(id);
    if (m?.groups?.model) return { model: m.groups.model, provider: m.groups.provider || null };
  }
  return { model: id, provider: null };
}

// Whether an option value or a write names the stored model `m`, by alias rules or the server's resolution.
function sameModel(a, m) {
  if (a == null || m == null) return false;
  if (a === m) return true;
  const x = canonical(a), y = canonical(m), names = [y.model, ...(serverInfo.get(m)?.aliases || [])];
  if (!names.includes(x.model) && !names.includes(a)) return false;
  return !x.provider || !y.provider || x.provider === y.provider;
}

// ---- which requests are which ----

function classify(method, url) {
  const u = new URL(url, location.href), own = cfg.prefix + '/api/catalog';
  const path = u.pathname, target = path + u.search;
  let m;
  if (u.origin !== location.origin) return;
  method = (method || 'GET').toUpperCase();
  // Each entry is tracked for its declared method only (writes default to POST, reads to GET).
  const is = (e, dflt) => String(e.method || dflt).toUpperCase() === method && (m = e.re.exec(target));
  for (const e of cfg.writes) if (is(e, 'POST')) return { kind: 'write', e, m };
  if (path === own || path.startsWith(own + '/'))
    return { kind: 'catalog', key: decode(path.slice(own.length + 1)) || 'hermes:catalog' };
  for (const e of [...cfg.live, ...cfg.static, ...cfg.sessions]) {
    if (!is(e, 'GET')) continue;
    return { e, m, kind: e.kind === 'sessions' ? 'session' : 'catalog', key: group(m, 'provider') || `${e.kind}:${e.url}` };
  }
}

// ---- pending catalogs ----

// Mark a catalog fetch pending; the returned `done` settles it once (also on its own after the timeout).
function pend(key) {
  const n = pending.get(key) || 0;
  let timer = setTimeout(() => done(), cfg.timeout);
  pending.set(key, n + 1);
  if (!n) emit('pending', { provider: key });
  const done = () => {
    if (!timer) return;
    clearTimeout(timer);
    timer = 0;
    const left = pending.get(key) - 1;
    left ? pending.set(key, left) : pending.delete(key);
    if (pending.size) return;
    safely(reapply);
    // Held writes go out with intent auto: the server keeps the stored model unless it is gone.
    for (const send of held.splice(0)) safely(send);
    emit('settled');
    for (const r of waiters.splice(0)) r();
    safely(checkUnavailable);
  };
  return done;
}

// ---- what the guard knows about sessions ----

function setKnown(s, m, v) {
  if (versions.get(s) > v) return;
  if (v != null) versions.set(s, v);
  str(m) ? known.set(s, m) : known.delete(s);
  budget = 0;
}

function clearNotices() {
  unavailable = null;
  for (const n of D.querySelectorAll(`[${PLACEHOLDER}], .${NOTICE}`)) n.remove();
}

function setCurrent(s) {
  if (cur === s) return;
  cur = s;
  budget = 0;
  clearNotices();
}

// The server's word on a session: stored model, version, availability and how it resolves the id.
// `judging`: a write waits on this answer to be judged; re-applying first would undo the write's own pick.
function sessionModel(s, judging) {
  const at = ++asks;
  return originalFetch.call(W, `${cfg.prefix}/api/sessions/${encodeURIComponent(s)}/model`)
    .then(r => r.json())
    .then(info => {
      if (info.session !== s || toldAt.get(s) > at) return info;
      if (str(info.model)) serverInfo.set(info.model, { provider: str(info.provider), aliases: [].concat(info.aliases || []) });
      setKnown(s, info.model, +info.version);
      if (s === cur && !judging) reapply();
      return info;
    })
    .catch(() => ({}));
}

// A session response the host asked for: which session the page shows, and (maybe) its stored model.
function learnSession(c, json, startedAt) {
  const s = (c.e.session && first(walk(json, c.e.session))) || group(c.m, 'session');
  if (!s) return;
  setCurrent(s);
  if (!(pickAt.get(s) > startedAt) && c.e.model) setKnown(s, first(walk(json, c.e.model)));
  // The host still holds the previous session when this runs: re-check two frames later, not now.
  known.has(s) ? recheck(RECHECK_FRAMES + 2) : sessionModel(s);
}

// The page's own write (or its route) names its session: learnt even where no session URL is declared.
// Returns the server lookup when the session's stored model was not known yet.
function followSession(s, judging) {
  if (s == null) return;
  setCurrent(s);
  if (!known.has(s)) return sessionModel(s, judging);
}

// ---- the model <select> ----

const selects = () => [...D.querySelectorAll(cfg.modelSelect)].filter(n => n.options);
const placeholder = (sel, m) => [...sel.options].find(o => o.value === m && o.hasAttribute(PLACEHOLDER));
// The option that shows `m`: its exact value first, else one naming it under another spelling.
function findOption(sel, m) {
  const real = [...sel.options].filter(o => !o.hasAttribute(PLACEHOLDER));
  return real.find(o => o.value === m) || real.find(o => sameModel(o.value, m));
}

// Set the value and fire the events a person's pick fires, so the host's own state follows.
function show(sel, value) {
  sel.value = value;
  applying = true;
  try {
    for (const t of ['input', 'change']) sel.dispatchEvent(new Event(t, { bubbles: true }));
  } finally {
    applying = false;
  }
  emit('reapplied', { session: cur, model: value });
}

// Setting select.value fires no mutation: a host resetting it later is caught on the next frames.
function tick() {
  if (frames <= RECHECK_FRAMES && !inPicker()) safely(() => reapply(true));
  if (--frames > 0) requestAnimationFrame(tick);
}
function recheck(n) {
  if (!frames) requestAnimationFrame(tick);
  frames = Math.max(frames, n);
}

function reapply(again) {
  const m = stored();
  if (m == null || budget > MAX_REAPPLY) return;
  if (!again) recheck(RECHECK_FRAMES);
  for (const sel of selects()) {
    const real = findOption(sel, m);
    if (real && unavailable) clearNotices();
    if (!real && unavailable?.s === cur && unavailable.m === m && !placeholder(sel, m)) markUnavailable(sel);
    else {
      const target = real || placeholder(sel, m);
      if (target && !sameModel(sel.value, m)) { budget++; show(sel, target.value); }
    }
  }
}

// The placeholder is the core's (re-apply keeps it selected); the notice beside it is the notices script's.
function markUnavailable(sel) {
  const { m, why } = unavailable, o = new Option(m + ' (unavailable)', m);
  Object.assign(o, { title: why, style: 'color:GrayText' }).setAttribute(PLACEHOLDER, '');
  sel.append(o);
  show(sel, m);
  tell({ session: cur, model: m, why, sel, note: 'unavailable' });
}

// After everything settled the stored model is still no option: ask the server whether it is gone.
async function checkUnavailable(s = cur) {
  if (stored() == null || !selects().some(sel => !findOption(sel, stored()))) return;
  const info = await sessionModel(s);
  if (cur !== s || pending.size || stored() == null) return;
  if (info.availability === 'unknown') unavailable = { s, m: stored(), why: str(info.reason, '') };
  if (info.replacement) tell({ session: s, note: 'ask' });
  reapply();
}

// Notices and prompts live in their own script, loaded the first time there is something to tell.
function tell(d) {
  const q = W.hermesNoticeQueue ||= [];
  if (q.push(d) < 2) D.head.append(Object.assign(D.createElement('script'), { src: cfg.prefix + '/static/hermes-notices.js', nonce }));
  W.hermesNotices?.();
}

// ---- user intent ----

// A click or key press on something that names the model (a custom dropdown row) is a pick of it.
function namesModel(el, model) {
  if (!model || model.length < 3) return false; // a one- or two-letter id is in every text
  const sels = selects(), label = sels.map(sel => findOption(sel, model)?.textContent?.trim()).find(Boolean);
  for (let n = el, i = 0; n && n.nodeType === 1 && n !== D.body && i < 4; n = n.parentElement, i++) {
    if (sels.some(sel => n.contains(sel))) return false; // the select's own options name every model
    const text = n.textContent || '';
    if (text.length > 300) return false; // a whole list or panel names every model: no signal
    if (text.includes(model) || (label && text.trim() === label)) return true;
    if ([...n.attributes].some(a => a.value === model)) return true;
  }
  return false;
}

// Options just changed in this task and the guard has not re-applied yet: a value set now is the
// host's own restore after filling, not a choice. Pending records are handed to the re-apply.
function selectsJustChanged() {
  const recs = observer?.takeRecords() || [];
  if (!recs.length) return false;
  const touched = touchesSelect(recs);
  if (touched) queueMicrotask(() => safely(reapply));
  return touched;
}

// The rule that does not need trusted events: replacing a model the page can show (its option is
// present, nothing pending for its provider) is a choice; replacing one it could not find is a correction.
function isChoice(s, proposed) {
  const m = known.get(s);
  if (m == null || proposed == null || sameModel(proposed, m)) return false;
  const sels = selects();
  if (!sels.some(sel => sel.value === proposed || sameModel(sel.value, proposed))) return false;
  if (!sels.some(sel => findOption(sel, m) || placeholder(sel, m))) return false;
  const provider = canonical(m).provider || serverInfo.get(m)?.provider;
  if (provider && pending.has(provider)) return false;
  // A recent click somewhere else (a session list, a panel) explains the change: the page's fallback.
  if (pointer && now() - pointer.at <= GESTURE_MS && !pointer.inPicker && !namesModel(pointer.target, proposed)) return false;
  return !selectsJustChanged();
}

function describeWrite(c, body, header) {
  const json = safely(() => body && JSON.parse(body));
  const read = spec => {
    const [kind, p] = String(spec).split(/:(.*)/);
    return kind === 'path' ? group(c.m, p) : kind === 'body' && json ? first(walk(json, p)) : undefined;
  };
  const session = read(c.e.session), model = read(c.e.model), t = now();
  const recent = pointer && t - pointer.at <= GESTURE_MS;
  const named = model != null && recent && !pointer.inPicker && namesModel(pointer.target, model);
  // A create (no session yet) made while the page shows no session (a new-chat view) carries the user's
  // choice: there is no other chat whose model could be left over in the picker.
  const choice = !header && (session != null ? safely(() => isChoice(session, model)) : cur == null);
  const intent = decideIntent({ header, proposed: model, pick, gestureAt, markAt, now: t, named, choice });
  if (intent === 'user') {
    markAt = undefined; // userIntent() explains one write only
    if (session != null && model != null) {
      setCurrent(session);
      setKnown(session, model);
      pickAt.set(session, t);
    }
  }
  const restates = sameModel(model, known.get(session));
  return {
    session, intent, detail: { session, model },
    hold: intent === 'auto' && model != null && pending.size > 0 && !restates,
  };
}

function hold(w, send) {
  if (!unloading) held.push(send);
  emit('write-held', w.detail);
  return send;
}
const unhold = h => held.includes(h) && held.splice(held.indexOf(h), 1);

// The server kept the stored model: the picker goes back to it. The notice saying so (where the picker
// showed the refused model), a change let through without the user, or one the user must decide, are
// the notices script's: it gets the select that showed the proposal and the server's answer to await.
function afterWrite(w, header) {
  const kept = header('X-Hermes-Model-Kept'), note = header('X-Hermes-Notice'), s = w.session;
  if (note) return tell({ ...w.detail, note });
  if (!kept) return;
  const sel = selects().find(sel => sameModel(sel.value, w.detail.model) && !sameModel(sel.value, known.get(s)));
  emit('write-kept', { ...w.detail, reason: kept });
  reapply();
  if (s != null) tell({ ...w.detail, note: 'kept', reason: kept, sel, info: sessionModel(s) });
}

// ---- fetch ----

async function fetchWrite(c, input, init) {
  const req = input instanceof Request && input;
  let w, i;
  try {
    const body = await (init?.body ?? (req && req.clone().text()));
    const headers = new Headers(init?.headers || req?.headers);
    const text = typeof body === 'string' && body;
    w = describeWrite(c, text, headers.get(INTENT_HEADER));
    const judge = !headers.has(INTENT_HEADER) && !w.hold;
    const asked = w.intent === 'auto' && followSession(w.session, judge);
    if (asked && judge) {
      // A session the guard had not seen and nothing pending: the write waits for the server's
      // answer, so the rule can judge it against the stored model; a correction is then re-applied.
      await asked;
      w = describeWrite(c, text, null);
      if (w.intent === 'auto') reapply();
    }
    headers.has(INTENT_HEADER) || headers.set(INTENT_HEADER, w.intent);
    i = { ...init, headers };
  } catch (e) {
    warn(e);
    return originalFetch.call(W, input, init);
  }
  const send = () => originalFetch.call(W, input, i).then(r => (safely(() => afterWrite(w, h => r.headers.get(h))), r));
  if (!w.hold) return send();
  return new Promise((resolve, reject) => {
    const signal = i.signal || req?.signal, h = hold(w, () => send().then(resolve, reject));
    signal?.addEventListener('abort', () => { unhold(h); reject(signal.reason); });
  });
}

function fetchCatalog(c, input, init) {
  const done = pend(c.key);
  // Settle one task after the body was read, so the host's own .json() handlers add the options first.
  const after = () => setTimeout(done);
  return originalFetch.call(W, input, init).then(r => {
    safely(() => r.clone().arrayBuffer().then(after, after)) || done();
    return r;
  }, e => { done(); throw e; });
}

function fetchSession(c, input, init) {
  const startedAt = now();
  return originalFetch.call(W, input, init).then(r => !r.ok ? r
    : r.clone().json().then(j => learnSession(c, j, startedAt)).catch(warn).then(() => r));
}

if (originalFetch) W.fetch = function (input, init) {
  const c = safely(() => classify(init?.method || input?.method, input?.url || input));
  try {
    if (c) return (c.kind === 'write' ? fetchWrite : c.kind === 'session' ? fetchSession : fetchCatalog)(c, input, init);
  } catch (e) { warn(e); }
  return originalFetch.apply(this, arguments);
};

// ---- XMLHttpRequest ----

const XP = W.XMLHttpRequest?.prototype, X = Symbol('hermes'), { open, send, setRequestHeader } = XP || {};
if (XP) Object.assign(XP, {
  open(method, url, async) {
    const x = this, startedAt = now();
    safely(() => {
      const c = classify(method, url);
      unhold(x[X]?.held); // a held write whose XHR is re-opened is dropped
      x[X] = { c, sync: async === false };
      // Learnt at readyState 4, before the host's load handlers run.
      if (c?.kind === 'session') x.addEventListener('readystatechange', () => x.readyState === 4 && x.status > 199 && x.status < 300 &&
        safely(() => learnSession(c, x.responseType === 'json' ? x.response : JSON.parse(x.responseText), startedAt)));
    });
    return open.apply(x, arguments);
  },
  setRequestHeader(k, v) {
    if (this[X] && String(k).toLowerCase() === INTENT_HEADER.toLowerCase()) this[X].intent = v;
    return setRequestHeader.apply(this, arguments);
  },
  send(body) {
    const x = this, args = arguments, i = x[X], c = i?.c;
    const waiting = safely(() => {
      if (c?.kind === 'catalog') x.addEventListener('loadend', pend(c.key));
      if (c?.kind !== 'write') return;
      const w = describeWrite(c, typeof body === 'string' && body, i.intent);
      if (w.intent === 'auto') followSession(w.session);
      if (!i.intent) setRequestHeader.call(x, INTENT_HEADER, w.intent);
      x.addEventListener('load', () => afterWrite(w, h => x.getResponseHeader(h)));
      if (w.hold && !i.sync) return i.held = hold(w, () => { i.held = null; send.apply(x, args); });
    });
    if (!waiting) return send.apply(x, args);
  },
});

// ---- picks and gestures ----

function onGesture(e) {
  if (!e.isTrusted) return;
  const t = e.target, picker = !!(cfg.picker && t.closest?.(cfg.picker));
  if (picker) gestureAt = now();
  if (e.type !== 'keydown') pointer = { at: now(), target: t, inPicker: picker || !!t.closest?.(cfg.modelSelect) };
}

function onPick(e) {
  const t = e.target, at = now();
  if (applying || !t.matches?.(cfg.modelSelect)) return;
  // A trusted event is a person; an untrusted one (Selenium Select, select_option) counts when the rule says choice.
  if (!(e.isTrusted || inPicker() || (cur != null && isChoice(cur, t.value)))) return;
  pick = { value: t.value, at };
  if (unavailable && t.value !== unavailable.m) clearNotices();
  if (cur != null) { setKnown(cur, t.value); pickAt.set(cur, at); }
}

for (const t of ['pointerdown', 'click', 'keydown']) D.addEventListener(t, e => safely(() => onGesture(e)), true);
for (const t of ['input', 'change']) D.addEventListener(t, e => safely(() => onPick(e)), true);
W.addEventListener('pagehide', () => { unloading = true; held.length = 0; }); // held writes are never sent late

// ---- options landing ----

function touchesSelect(recs) {
  return recs.some(r => r.target.closest?.('select') ||
    [...r.addedNodes].some(n => n.tagName === 'SELECT' || n.querySelector?.('select')));
}
observer = new MutationObserver(recs => safely(() => touchesSelect(recs) && reapply()));
observer.observe(D.documentElement, { childList: true, subtree: true, attributeFilter: ['value'] });

// ---- other tabs ----

let delay = 500;
function connect() {
  if (!cfg.ws || unloading) return;
  safely(() => Object.assign(new WebSocket(location.origin.replace(/^http/, 'ws') + cfg.ws), {
    onopen: () => { delay = 500; },
    onmessage: ev => safely(() => {
      const msg = JSON.parse(ev.data);
      if (msg?.type !== 'model' || !str(msg.session)) return;
      setKnown(msg.session, msg.model, +msg.version);
      if (msg.session === cur) reapply();
    }),
    onclose: () => { setTimeout(connect, delay); delay = Math.min(delay * 2, 10000); },
  }));
}
connect();
if (pageSession) safely(() => followSession(pageSession));

expose();
})();
