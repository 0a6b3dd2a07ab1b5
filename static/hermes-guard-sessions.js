// hermes-plugin browser guard, optional part loaded right after the core on pages with guarded writes:
// session switches, models no catalogue lists, writes a re-apply triggers, picks that survive reloads and
// rebuilds. It uses only the core's public API (hermesGuard) and wraps fetch/XHR once more, outside the core.
// Behaviour and reasons: docs/browser-guard.md ("Session switches, re-apply writes and kept picks").
(() => {
'use strict';
const W = window, D = document, G = W.hermesGuard;
// No core, a disabled or older core, or loaded twice: the page runs with the core alone.
if (!G?.learn || G.state().disabled || W.hermesGuardSessions) return;
W.hermesGuardSessions = true;

const { sameModel, parseConfig } = G._internals;
const PENDING = 'data-hermes-pending'; // the option shown while a session's model is being read
const PENDING_TEXT = "Loading this chat's model…";
const PLACEHOLDER = 'data-hermes-unavailable'; // the core's marker for an unavailable model's option
const PICKS = 'hermes-guard:picks'; // sessionStorage: picks the page has not written yet, per session
const INTENT = 'X-Hermes-Intent';

const warn = e => console.warn('hermes-guard:', e);
const safely = f => { try { return f(); } catch (e) { warn(e); } };
let cfg;
try {
  cfg = parseConfig(D.getElementById('hermes-plugin-config').textContent);
} catch (e) {
  return warn(e);
}
const state = () => G.state();
const selects = () => [...D.querySelectorAll(cfg.modelSelect)].filter(n => n.options);
const optionFor = (sel, m) => m != null && ([...sel.options].find(o => o.value === m) ||
  [...sel.options].find(o => !o.hasAttribute(PENDING) && sameModel(o.value, m)));
const group = (m, k) => safely(() => m.groups?.[k] && decodeURIComponent(m.groups[k]));
// The events a person's pick fires, so the host's own change handler runs.
const fire = sel => { for (const t of ['input', 'change']) sel.dispatchEvent(new Event(t, { bubbles: true })); };

function notice(sel, text, mark) {
  const n = Object.assign(D.createElement('span'), { className: 'hermes-notice', textContent: text });
  n.setAttribute('role', 'status');
  n.setAttribute(mark, '');
  if (sel.getClientRects().length) return sel.after(n);
  n.style.cssText = 'position:fixed;left:1em;bottom:1em;z-index:2147483647;padding:.4em .8em;background:#fff8c4;color:#222';
  D.body.append(n);
}
const unnotice = mark => { for (const n of D.querySelectorAll(`.hermes-notice[${mark}]`)) n.remove(); };

// The same classification as the core's, for the two kinds this part acts on.
function classify(method, url) {
  const u = new URL(url, location.href), target = u.pathname + u.search;
  if (u.origin !== location.origin) return;
  method = String(method || 'GET').toUpperCase();
  let m;
  for (const e of cfg.writes)
    if (String(e.method || 'POST').toUpperCase() === method && (m = e.re.exec(target))) return { kind: 'write', e, m };
  for (const e of cfg.sessions)
    if (String(e.method || 'GET').toUpperCase() === method && (m = e.re.exec(target))) return { kind: 'session', e, m };
}

// A write's session and model (from the body or the URL), and a setter for a body model.
function parts(c, text) {
  const json = safely(() => text && JSON.parse(text));
  const at = spec => {
    const [kind, p] = String(spec).split(/:(.*)/);
    if (kind === 'path') return { value: group(c.m, p) };
    if (kind !== 'body' || !json || typeof json !== 'object') return {};
    const keys = p.split('.'), key = keys.pop();
    const parent = keys.reduce((o, k) => o && typeof o === 'object' ? o[k] : undefined, json);
    return parent && typeof parent === 'object' ? { value: parent[key], set: v => { parent[key] = v; } } : {};
  };
  const model = at(c.e.model), session = at(c.e.session).value;
  return { json, session: typeof session === 'number' ? String(session) : session, model: model.value, setModel: model.set };
}

// ---- after a session switch, until the new session's stored model is known ----

let switching = null, switches = 0, looping = false;
const waiting = []; // senders of automatic writes held until the switched-to session's model is known

function beginSwitch(s) {
  if (s == null || s === switching) return;
  if (switching != null) endSwitch(); // on to yet another session: the previous wait is over
  const left = state().session;
  // Only a switch away from a session the page showed: a first load has no previous model on screen.
  if (left == null || s === left) return;
  switches++;
  switching = s;
  // The core keeps the session it knows until the page's own answer names the new one. Forgetting the
  // left session's model there means nothing re-applies it meanwhile (it is read again on a return).
  G.learn(left, null);
  showPending(true);
  // Never longer than the guard waits for any read: then held writes go as they are, the server judges.
  setTimeout(() => s === switching && endSwitch(), cfg.timeout);
}

// "Loading", silently (no event reaches the host), on every frame until the model is known: a host still
// finishing the previous session's work (a late list, its own restore) must not put that model back.
function showPending(first) {
  if (switching == null) return void (looping = false);
  const { session, model } = state();
  if (session === switching && model != null) return void (looping = false, endSwitch());
  for (const sel of selects()) {
    if (!sel.querySelector(`[${PENDING}]`)) {
      const o = new Option(PENDING_TEXT, '');
      o.setAttribute(PENDING, '');
      sel.prepend(o);
      sel.setAttribute('aria-busy', 'true');
      unnotice(PENDING);
      notice(sel, PENDING_TEXT, PENDING);
    }
    if (sel.value !== '') sel.value = '';
  }
  if (!first || !looping) requestAnimationFrame(() => safely(showPending));
  looping = true;
}

function endSwitch() {
  const s = switching, { session, model } = state(), m = session === s ? model : null;
  switching = null;
  for (const sel of selects()) {
    sel.querySelector(`[${PENDING}]`)?.remove();
    sel.removeAttribute('aria-busy');
    const o = optionFor(sel, m); // the stored model in place of "loading", still silently
    if (o) sel.value = o.value;
  }
  unnotice(PENDING);
  for (const send of waiting.splice(0)) safely(() => send(m));
}

// A session read ended. A late answer about a session the page left made the core take it as current
// again: its model is forgotten once more, so nothing re-applies it over "loading".
const reading = new Map(); // session -> the page's own reads of it in flight (a kept pick waits for them)
function readBegun(s) {
  reading.set(s, (reading.get(s) || 0) + 1);
  beginSwitch(s);
}

function readEnded(s, ok, at) {
  const left = (reading.get(s) || 1) - 1;
  left ? reading.set(s, left) : reading.delete(s);
  queueMicrotask(() => safely(resumePick));
  if (switching == null) return;
  if (s !== switching && at < switches && state().session === s) return G.learn(s, null);
  if (s === switching && !ok) endSwitch();
}

// ---- models no catalogue lists (the core shows the ones whose catalogue is unknown) ----

// Settled, and the session's stored model is still no option: when the server says no catalogue lists
// it but the session stores it, show it as itself, marked unavailable, never the page's default.
async function markAbsent() {
  const { session: s, model: m } = state();
  if (s == null || m == null || G.pending().length || selects().every(sel => optionFor(sel, m))) return;
  const info = await (await fetch(`${cfg.prefix}/api/sessions/${encodeURIComponent(s)}/model`)).json();
  const now = state();
  if (info.availability !== 'absent' || info.model !== m || now.session !== s || now.model !== m) return;
  const why = typeof info.reason === 'string' ? info.reason : '';
  for (const sel of selects()) {
    if (optionFor(sel, m)) continue;
    const o = new Option(m + ' (unavailable)', m); // text, never markup
    Object.assign(o, { title: why, style: 'color:GrayText' }).setAttribute(PLACEHOLDER, '');
    sel.append(o);
    notice(sel, `Model ${m} is unavailable${why && ': ' + why}. Your saved choice was kept.`, PLACEHOLDER);
    sel.value = m;
    fire(sel); // the host's state follows: its next send carries the stored model
  }
}

// ---- picks kept across reloads, and the provider the user chose ----

const preferred = new Map(); // session -> the option value the user picked (its provider's spelling)
const checked = new Set(); // sessions whose stored model this page already compared with a kept pick
const picks = () => safely(() => JSON.parse(sessionStorage.getItem(PICKS) || '{}')) || {};
function savePick(s, m) {
  const all = picks();
  m == null ? delete all[s] : (all[s] = m);
  safely(() => sessionStorage.setItem(PICKS, JSON.stringify(all)));
}
// The pick's write got an answer: the server has it (or said why not). One cut off by a reload or the
// network never got one, so the pick stays for the reloaded page. A newer pick is left alone.
const answered = (s, m) => picks()[s] === m && savePick(s, null);

// A pick the page never wrote before it was reloaded: the guard takes it as the stored model again, so
// its re-apply fires the host's own change handler and the host writes it its own way, as the user's.
function resumePick() {
  const { session: s, model } = state(), m = s != null && picks()[s];
  // Not before the page has the session itself: its change handler may need what that read brings.
  if (!m || model == null || checked.has(s) || reading.get(s) || G.pending().length
    || !selects().some(sel => optionFor(sel, m))) return;
  checked.add(s);
  if (sameModel(model, m)) return savePick(s, null); // it did land
  G.learn(s, m);
}

// Before the core's own listeners (window capture runs first): the stored model as it was when this
// task's first input/change began (a pick's `input` already makes the core store it before `change`).
let before, snapped = false, absorbing = false;
for (const t of ['input', 'change']) {
  W.addEventListener(t, () => {
    if (snapped) return;
    snapped = true;
    before = state().model;
    setTimeout(() => { snapped = false; });
  }, true);
  D.addEventListener(t, e => safely(() => afterCore(e)), true);
}
function afterCore(e) {
  const t = e.target;
  if (!t.matches?.(cfg.modelSelect)) return;
  const { session, model } = state();
  if (!e.isTrusted && sameModel(t.value, before)) {
    // A re-apply (or a script restating the stored model): a write its handler makes in this task
    // restates the stored model and is answered in the page.
    absorbing = true;
    setTimeout(() => { absorbing = false; });
  } else if (e.type === 'change' && session != null && model === t.value && model !== before) {
    // The core took it as the user's pick (the stored model is now the shown value).
    preferred.set(session, t.value);
    checked.add(session);
    savePick(session, t.value); // until the page writes it
  }
}

D.addEventListener('hermes:settled', () => safely(() => { resumePick(); markAbsent().catch(warn); }));
// The server kept a stored model no catalogue lists over the page's own correction: show it as itself.
D.addEventListener('hermes:write-kept', e => {
  if (e.detail?.reason === 'model_absent_kept') markAbsent().catch(warn);
});
D.addEventListener('hermes:reapplied', e => safely(() => {
  const { session, model: value } = e.detail || {}, m = state().model;
  const sel = selects().find(x => x.value === value);
  if (!sel) return;
  if (!sel.options[sel.selectedIndex]?.hasAttribute(PLACEHOLDER)) {
    for (const o of sel.querySelectorAll(`[${PLACEHOLDER}]`)) if (o.value !== m) o.remove();
    unnotice(PLACEHOLDER);
  }
  // Two providers offering the same bare id: re-apply keeps the one the user chose.
  const pref = preferred.get(session);
  if (pref == null || pref === value || !sameModel(pref, m) || ![...sel.options].some(o => o.value === pref)) return;
  sel.value = pref;
  fire(sel);
}));

// ---- fetch ----

const answeredHere = () => new Response('{}', {
  status: 200, headers: { 'Content-Type': 'application/json', 'X-Hermes-Answered': 'locally' },
});

function guardWrite(inner, self, input, init, c) {
  const text = typeof init?.body === 'string' ? init.body : null;
  const w = parts(c, text), headers = new Headers(init?.headers);
  const intent = String(headers.get(INTENT) || '').toLowerCase(), { session, model } = state();
  const pick = w.session != null && picks()[w.session];
  if (pick && sameModel(w.model, pick) && !intent) {
    // The write of the user's pick is the user's, however late the page sends it (a batched save, a
    // save after a reload), and outlives a reload that follows it at once.
    headers.set(INTENT, 'user');
    init = { ...init, headers, ...(text != null && text.length < 60000 && { keepalive: true }) };
    return send(inner, self, input, init, w).then(r => (safely(() => answered(w.session, pick)), r));
  } else if (absorbing && intent !== 'user' && w.session === session && model != null && sameModel(w.model, model)) {
    // The host's own handler answering a re-apply: it restates the stored model, the server needs no write.
    D.dispatchEvent(new CustomEvent('hermes:write-absorbed', { detail: { session, model: w.model } }));
    return Promise.resolve(answeredHere());
  } else if (switching != null && (w.session === switching || w.model === '') && intent !== 'user' && text != null) {
    // Held until the switched-to session's stored model is known, then sent carrying it.
    return new Promise((resolve, reject) => waiting.push(m => {
      const body = m != null && w.setModel ? (w.setModel(m), JSON.stringify(w.json)) : text;
      send(inner, self, input, { ...init, body }, w).then(resolve, reject);
    }));
  }
  return send(inner, self, input, init, w);
}

// A guarded write the server let through stored its model: the page now takes that as stored.
function send(inner, self, input, init, w) {
  return inner.call(self, input, init).then(r => {
    const passed = r.ok && r.headers.get('X-Hermes-Decision') && !r.headers.get('X-Hermes-Model-Kept');
    if (passed && w.session != null && typeof w.model === 'string' && w.model) safely(() => G.learn(w.session, w.model));
    safely(() => created(w, h => r.headers.get(h)));
    return r;
  });
}

// A create the server gave the host's default model: the page shows the new session from now on, with that
// model, also where the host leaves its picker as it was. Shown silently: the host still holds the previous
// session when this runs, and its change handler would write the default into that one.
function created(w, header) {
  const s = header('X-Hermes-Session'), m = header('X-Hermes-Model-Default');
  if (w.session != null || !s || !m) return;
  for (const sel of selects()) {
    const o = optionFor(sel, m);
    if (o) sel.value = o.value;
  }
  G.learn(s, m, undefined, true); // the core re-applies it from now on (nothing to change on screen now)
}

const inner = W.fetch;
W.fetch = function (input, init) {
  const c = safely(() => classify(init?.method || input?.method, input?.url || input));
  const s = c?.kind === 'session' && group(c.m, 'session');
  if (s) {
    const at = switches;
    safely(() => readBegun(s));
    return inner.apply(this, arguments).then(r => (safely(() => readEnded(s, r.ok, at)), r),
      e => { safely(() => readEnded(s, false, at)); throw e; });
  }
  if (c?.kind === 'write' && !(input instanceof Request)) {
    const out = safely(() => guardWrite(inner, this, input, init, c));
    if (out) return out;
  }
  return inner.apply(this, arguments);
};

// ---- XMLHttpRequest: a session read starts a switch too, a create shows its default, and writes are
// held during a switch or answered in the page like fetch's (jQuery, axios and many hosts write by XHR) ----

const XP = W.XMLHttpRequest?.prototype, X = Symbol('hermes-sessions');
const { open, send: xsend, setRequestHeader: setHeader, abort } = XP || {};
// What an XHR answered in the page reports: own properties shadowing the prototype's, until it is re-opened.
const LOCAL = ['readyState', 'status', 'statusText', 'responseText', 'response', 'responseURL',
  'getResponseHeader', 'getAllResponseHeaders'];

if (open) Object.assign(XP, {
  open(method, url, async) {
    const x = this;
    safely(() => {
      if (x[X]) x[X].dropped = true; // a write held on this XHR is dropped when it is re-opened
      x[X]?.ended?.(false); // re-opening cuts off a read in flight without a loadend
      for (const k of LOCAL) delete x[k];
      const c = classify(method, url), s = c?.kind === 'session' && group(c.m, 'session');
      x[X] = { c, s, url: new URL(url, location.href).href, sync: async === false };
      // A create by XHR: its session is in the URL or nowhere (the body is not read here).
      if (c?.kind === 'write') x.addEventListener('load', () => safely(() =>
        created(parts(c, null), h => x.getResponseHeader(h))), { once: true });
    });
    return open.apply(x, arguments);
  },
  setRequestHeader(k, v) {
    if (this[X] && String(k).toLowerCase() === INTENT.toLowerCase()) this[X].intent = String(v).toLowerCase();
    return setHeader.apply(this, arguments);
  },
  abort() {
    if (this[X]) this[X].dropped = true; // a held write whose XHR is aborted is never sent
    return abort.apply(this, arguments);
  },
  send(body) {
    const x = this, i = x[X], args = arguments;
    // A session read begins when it is sent: one opened and never sent holds nothing back.
    if (i?.s) safely(() => {
      const at = switches, s = i.s;
      i.s = null; // begun once, however often send() is called
      i.ended = ok => { i.ended = null; readEnded(s, ok, at); };
      readBegun(s);
      x.addEventListener('loadend', () => safely(() => i.ended?.(x.status > 199 && x.status < 300)), { once: true });
    });
    const done = safely(() => {
      if (i?.c?.kind !== 'write' || i.sync || typeof body !== 'string') return;
      const w = parts(i.c, body), { session, model } = state(), pick = w.session != null && picks()[w.session];
      if (i.intent === 'user') return;
      if (pick && sameModel(w.model, pick) && !i.intent) {
        // The write of the user's pick is the user's, however late (as for fetch), and never answered here.
        x.addEventListener('loadend', () => x.status && safely(() => answered(w.session, pick)), { once: true });
        return void x.setRequestHeader(INTENT, 'user');
      }
      if (absorbing && w.session === session && model != null && sameModel(w.model, model)) {
        // The host's own handler answering a re-apply: answered here, with the events a real answer fires.
        D.dispatchEvent(new CustomEvent('hermes:write-absorbed', { detail: { session, model: w.model } }));
        x.dispatchEvent(new ProgressEvent('loadstart')); // as send() does
        answerLocally(x, i);
        return true;
      }
      if (switching == null || (w.session !== switching && w.model !== '')) return;
      // Held until the switched-to session's stored model is known, then sent carrying it.
      waiting.push(m => {
        if (i.dropped) return;
        xsend.call(x, m != null && w.setModel ? (w.setModel(m), JSON.stringify(w.json)) : body);
      });
      return true;
    });
    if (!done) return xsend.apply(x, args);
  },
});

function answerLocally(x, i) {
  const text = '{}', headers = { 'content-type': 'application/json', 'x-hermes-answered': 'locally' };
  const set = (k, value) => Object.defineProperty(x, k, { value, configurable: true });
  // As a real answer does, in a later task: headers (status with them), body, done, then load and loadend.
  // Nothing fires when the page aborted or re-opened the XHR meanwhile.
  setTimeout(() => safely(() => {
    if (i.dropped) return;
    set('status', 200);
    set('statusText', 'OK');
    set('responseURL', i.url);
    set('getResponseHeader', h => headers[String(h).toLowerCase()] ?? null);
    set('getAllResponseHeaders', () => Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join(''));
    for (const n of [2, 3, 4]) {
      set('readyState', n);
      if (n > 2) {
        set('responseText', text);
        set('response', x.responseType === 'json' ? {} : text);
      }
      x.dispatchEvent(new Event('readystatechange'));
    }
    for (const t of ['load', 'loadend']) x.dispatchEvent(new ProgressEvent(t, { loaded: 2, total: 2, lengthComputable: true }));
  }));
}
})();
