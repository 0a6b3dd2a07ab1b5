/* hermes-plugin browser guard (see docs/browser-guard.md): holds automatic model writes while
   catalogs load and re-applies the stored model when they land. No deps, no build step. */
(() => {
'use strict';
const W = window, D = document, SEL = '#modelSelect, [data-hermes-model]';
if (W.hermesGuard) return; // injected twice: the first copy already wraps everything
const now = () => performance.now();
const warn = e => { try { console.warn('hermes-guard:', e); } catch (_) {} };
const safely = f => { try { return f(); } catch (e) { warn(e); } };
const str = (v, d) => typeof v === 'string' && v ? v : d;

// Python regex -> JS: (?P<n> and (?P=n); escapes are copied as they are.
const toJsRegex = src => new RegExp(String(src).replace(/\\.|\(\?P<(\w+)>|\(\?P=(\w+)\)/g,
  (m, n, r) => n ? `(?<${n}>` : r ? `\\k<${r}>` : m));

// Dotted path: "a.b" walks objects, "x[]" walks the list at x; returns a flat list.
const walk = (obj, path) => String(path).split('.').reduce((cur, seg) => {
  const many = seg.endsWith('[]'), key = many ? seg.slice(0, -2) : seg;
  return cur.flatMap(v => {
    if (key) v = v && typeof v === 'object' && !Array.isArray(v) && Object.hasOwn(v, key) ? v[key] : undefined;
    return many ? (Array.isArray(v) ? v : []) : v === undefined ? [] : [v];
  });
}, [obj]);
const first = list => typeof list[0] === 'number' ? String(list[0]) : str(list[0]);

const parseConfig = text => {
  const c = JSON.parse(text);
  if (c?.constructor !== Object) throw new Error('config is not a JSON object');
  const out = {
    prefix: str(c.prefix, '/hermes-plugin').replace(/\/+$/, ''), ws: str(c.ws), picker: str(c.picker),
    modelSelect: str(c.modelSelect, SEL), timeout: c.fetchTimeoutMs > 0 ? +c.fetchTimeoutMs : 20000,
  };
  D.querySelector(out.modelSelect); // an invalid selector throws here, not later in a host's event
  for (const kind of ['writes', 'live', 'static', 'sessions']) {
    out[kind] = [].concat(c[kind] || []).flatMap(e => safely(() => str(e.url) && [{ ...e, kind, re: toJsRegex(e.url) }]) || []);
  }
  return out;
};

// User intent: the host said so, userIntent() just before, a fresh pick of this model, or a picker gesture.
const decideIntent = c => {
  const h = String(c.header || '').toLowerCase(), within = (t, ms) => t != null && c.now - t <= ms;
  return h === 'user' || h === 'auto' ? h : within(c.markAt, 2000) || within(c.gestureAt, 1500) ||
    (c.proposed != null && c.proposed === c.pick?.value && within(c.pick.at, 3000)) ? 'user' : 'auto';
};
const _internals = { toJsRegex, walk, parseConfig, decideIntent };

let cfg;
try {
  cfg = parseConfig(D.getElementById('hermes-plugin-config').textContent);
} catch (e) { // no or broken config: stay out of the way
  warn(e);
  W.hermesGuard = Object.freeze({ pending: () => [], whenSettled: async () => {}, userIntent() {}, _internals,
    state: () => ({ disabled: String(e.message), session: null, model: null, held: 0 }) });
  return;
}

// All state lives in this closure.
const pending = new Map(), waiters = [], held = [], known = new Map(), versions = new Map(), pickAt = new Map();
const ofetch = W.fetch, watched = new WeakSet(), HDR = 'X-Hermes-Intent';
let cur = null, lastPick, gestureAt, mark, unloading = false, unavailable, budget = 0, budgetFor, busy = false;
const emit = (name, detail = {}) => D.dispatchEvent(new CustomEvent('hermes:' + name, { detail }));
const dec = s => safely(() => decodeURIComponent(s)) ?? s;
const stored = () => known.get(cur);

const classify = (method, url) => {
  const u = new URL(url, location.href), own = cfg.prefix + '/api/catalog';
  let m, target = u.pathname + u.search;
  if (u.origin !== location.origin) return;
  method = String(method || 'GET').toUpperCase();
  for (const e of cfg.writes) {
    if (String(e.method || 'POST').toUpperCase() === method && (m = e.re.exec(target))) return { kind: 'write', e, m };
  }
  if (u.pathname === own || u.pathname.startsWith(own + '/')) {
    return { kind: 'catalog', key: dec(u.pathname.slice(own.length + 1)) || 'hermes:catalog' };
  }
  for (const e of [...cfg.live, ...cfg.static, ...cfg.sessions]) {
    if (!(m = e.re.exec(target))) continue;
    const g = m.groups?.provider;
    return e.kind === 'sessions' ? { kind: 'session', e, m } : { kind: 'catalog', key: g ? dec(g) : `${e.kind}:${e.url}` };
  }
};

// Pending catalog fetches: every start gets exactly one settle.
const pend = key => {
  const n = pending.get(key) || 0;
  let over = false;
  pending.set(key, n + 1);
  if (!n) emit('pending', { provider: key });
  const done = () => {
    if (over) return;
    over = true;
    clearTimeout(timer);
    if (pending.get(key) > 1) pending.set(key, pending.get(key) - 1); else pending.delete(key);
    if (pending.size) return;
    safely(reapply);
    for (const h of held.splice(0)) safely(h.send); // the server decides: keep M or let the fallback through
    emit('settled');
    for (const r of waiters.splice(0)) r();
    safely(checkUnavailable);
  };
  const timer = setTimeout(done, cfg.timeout); // a hung request must not hold writes forever
  return done;
};

const setKnown = (s, m, v) => {
  if (typeof v !== 'number') v = null;
  else if (versions.get(s) > v) return; // an older version never wins
  else versions.set(s, v);
  if (str(m)) known.set(s, m); else known.delete(s);
  return true;
};
const clearUnavailable = () => {
  unavailable = null;
  for (const n of D.querySelectorAll('[data-hermes-unavailable], .hermes-notice')) n.remove();
};
const setCurrent = s => { if (cur !== s) { cur = s; clearUnavailable(); } };

const learnSession = (c, j, t0) => {
  const s = (c.e.session && first(walk(j, c.e.session))) || (c.m.groups?.session && dec(c.m.groups.session));
  if (!s) return;
  setCurrent(s);
  // a pick made after this request started is newer than its response
  if (!(pickAt.get(s) > t0) && c.e.model) setKnown(s, first(walk(j, c.e.model)));
  reapply();
};

const sessionModel = s => ofetch.call(W, `${cfg.prefix}/api/sessions/${encodeURIComponent(s)}/model`,
  { headers: { Accept: 'application/json' } }).then(r => r.ok ? r.json() : {}).then(info => {
  if (info?.session === s && (info.model == null || str(info.model))) setKnown(s, info.model, info.version);
  return info || {};
}).catch(() => ({}));

// Only elements matching modelSelect are ever touched.
const selects = () => [...D.querySelectorAll(cfg.modelSelect)].filter(n => {
  if (n.tagName !== 'SELECT') return false;
  if (!watched.has(n)) {
    watched.add(n);
    new MutationObserver(reapply).observe(n, { attributes: true, subtree: true, attributeFilter: ['value'] });
  }
  return true;
});
const option = (sel, m, fake) => [...sel.options].find(o => o.value === m && o.hasAttribute('data-hermes-unavailable') === !!fake);
const show = (sel, m, more) => {
  sel.value = m;
  for (const t of ['input', 'change']) sel.dispatchEvent(new Event(t, { bubbles: true }));
  emit('reapplied', { session: cur, model: m, ...more });
};

function reapply() {
  const m = stored(), id = cur + '\n' + m;
  if (m == null || busy) return;
  if (budgetFor !== id) { budgetFor = id; budget = 0; }
  if (budget > 50) return; // stops a fight with a host that keeps resetting the value
  busy = true;
  try {
    for (const sel of selects()) {
      const real = option(sel, m);
      if (real && unavailable) clearUnavailable();
      if (!real && unavailable?.s === cur && unavailable.m === m && !option(sel, m, 1)) markUnavailable(sel);
      else if ((real || option(sel, m, 1)) && sel.value !== m) { budget++; show(sel, m); }
    }
  } finally { busy = false; }
}

const markUnavailable = sel => {
  const { m, why } = unavailable, o = new Option(m + ' (unavailable)', m), n = D.createElement('span');
  // text only, never markup: ids and reasons come from providers
  Object.assign(o, { title: why, style: 'color:GrayText' }).setAttribute('data-hermes-unavailable', '');
  Object.assign(n, { className: 'hermes-notice', textContent: `Model ${m} is unavailable${why && ': ' + why}. Your saved choice was kept.` })
    .setAttribute('role', 'status');
  sel.append(o);
  if (sel.nextElementSibling?.classList.contains('hermes-notice')) sel.nextElementSibling.remove();
  sel.after(n);
  show(sel, m, { unavailable: true });
};

// Everything settled and the stored model is still no option: ask the server whether it is unknown.
const checkUnavailable = () => {
  const s = cur;
  if (stored() != null && selects().some(sel => !option(sel, stored()))) {
    sessionModel(s).then(info => {
      if (cur !== s || pending.size || stored() == null) return;
      if (info.availability === 'unknown') unavailable = { s, m: stored(), why: str(info.reason, '') };
      reapply();
    });
  }
};

const describeWrite = (c, body, header) => {
  const json = safely(() => body && JSON.parse(body));
  const read = spec => {
    const [kind, p] = String(spec).split(/:(.*)/);
    return kind === 'path' ? c.m.groups?.[p] && dec(c.m.groups[p]) : kind === 'body' && json ? first(walk(json, p)) : undefined;
  };
  const session = read(c.e.session), model = read(c.e.model), t = now();
  const intent = decideIntent({ header, proposed: model, pick: lastPick, gestureAt, markAt: mark, now: t });
  if (intent === 'user') {
    mark = undefined; // userIntent() is one-shot
    if (session != null && model != null) {
      if (cur == null) setCurrent(session);
      setKnown(session, model);
      pickAt.set(session, t);
    }
  }
  // restating the known stored model changes nothing, so it need not wait
  return { session, model, intent, hold: intent === 'auto' && model != null && pending.size && known.get(session) !== model };
};

const hold = (w, send) => {
  const h = { send };
  if (!unloading) held.push(h); // during unload a held write is simply never sent
  emit('write-held', { session: w.session, model: w.model });
  return h;
};
const unhold = h => held.includes(h) && held.splice(held.indexOf(h), 1);

const afterWrite = (w, kept) => {
  if (!kept) return;
  emit('write-kept', { session: w.session, model: w.model, reason: kept });
  reapply(); // the stored model stayed: show it again, then confirm it with the server
  if (w.session != null) sessionModel(w.session).then(() => w.session === cur && reapply());
};

const fetchWrite = (c, input, init) => {
  const req = input instanceof Request && input;
  return Promise.resolve(init?.body ?? (req && req.clone().text())).then(b => {
    const h = new Headers(init?.headers || req?.headers), w = describeWrite(c, typeof b === 'string' && b, h.get(HDR));
    if (!h.has(HDR)) h.set(HDR, w.intent);
    return { w, init: { ...init, headers: h } };
  }).then(({ w, init: i }) => {
    const send = () => ofetch.call(W, input, i).then(r => {
      safely(() => afterWrite(w, r.headers.get('X-Hermes-Model-Kept')));
      return r;
    });
    return !w.hold ? send() : new Promise((resolve, reject) => {
      const sig = i.signal || req?.signal, h = hold(w, () => send().then(resolve, reject));
      sig?.addEventListener('abort', () => { unhold(h); reject(sig.reason); });
    });
  }, e => { warn(e); return ofetch.call(W, input, init); }); // our failure must never be the host's
};

const fetchCatalog = (c, input, init) => {
  const done = pend(c.key), after = () => setTimeout(done); // let the host's own .json() handlers run first
  return ofetch.call(W, input, init).then(r => {
    safely(() => r.clone().arrayBuffer().then(after, after)) || done();
    return r;
  }, e => { done(); throw e; });
};

// Learn the stored model before the host sees the response, so its fallback meets a known model.
const fetchSession = (c, input, init, t0 = now()) => ofetch.call(W, input, init).then(r => !r.ok ? r
  : r.clone().json().then(j => learnSession(c, j, t0)).catch(warn).then(() => r));

if (ofetch) {
  W.fetch = function (input, init) {
    const c = safely(() => classify(init?.method || input?.method, input?.url || input));
    try {
      if (c) return (c.kind === 'write' ? fetchWrite : c.kind === 'session' ? fetchSession : fetchCatalog)(c, input, init);
    } catch (e) { warn(e); }
    return ofetch.apply(this, arguments);
  };
}

const XP = W.XMLHttpRequest?.prototype;
if (XP) {
  const { open, send, setRequestHeader: setHeader } = XP, info = new WeakMap();
  XP.open = function (method, url, async) {
    safely(() => {
      const x = this, c = classify(method, url), t0 = now();
      if (info.get(x)?.held) unhold(info.get(x).held); // re-opened: the old request is gone
      info.set(x, { c, sync: arguments.length > 2 && !async, headers: {} });
      if (c?.kind === 'session') {
        x.addEventListener('load', () => x.status < 300 && safely(() =>
          learnSession(c, x.responseType === 'json' ? x.response : JSON.parse(x.responseText), t0)));
      }
    });
    return open.apply(this, arguments);
  };
  XP.setRequestHeader = function (k, v) {
    const i = info.get(this);
    if (i) i.headers[String(k).toLowerCase()] = v;
    return setHeader.apply(this, arguments);
  };
  XP.send = function (body) {
    const x = this, args = arguments, i = info.get(x), c = i?.c;
    const waiting = safely(() => {
      if (c?.kind === 'catalog') x.addEventListener('loadend', pend(c.key)); // loadend follows load, error, abort, timeout
      if (c?.kind !== 'write') return;
      const w = describeWrite(c, typeof body === 'string' && body, i.headers['x-hermes-intent']);
      if (!i.headers['x-hermes-intent']) setHeader.call(x, HDR, w.intent);
      x.addEventListener('load', () => afterWrite(w, x.getResponseHeader('X-Hermes-Model-Kept')));
      if (w.hold && !i.sync) return i.held = hold(w, () => { i.held = null; send.apply(x, args); });
    });
    if (!waiting) return send.apply(x, args);
  };
}

D.addEventListener('pointerdown', onGesture, true);
D.addEventListener('click', onGesture, true);
D.addEventListener('keydown', onGesture, true);
function onGesture(e) {
  if (e.isTrusted && cfg.picker && e.target.closest?.(cfg.picker)) gestureAt = now();
}
D.addEventListener('input', onPick, true);
D.addEventListener('change', onPick, true);
function onPick(e) {
  const t = e.target, n = now();
  // the page's own change is no pick, unless it follows a real gesture in the custom picker
  if (!t.matches?.(cfg.modelSelect) || !(e.isTrusted || n - gestureAt <= 1500)) return;
  lastPick = { value: t.value, at: n };
  if (unavailable && t.value !== unavailable.m) clearUnavailable();
  if (cur != null) { setKnown(cur, t.value); pickAt.set(cur, n); }
}
W.addEventListener('pagehide', () => { unloading = true; held.length = 0; });
new MutationObserver(recs => safely(() => recs.some(r => r.target.closest?.('select') ||
  [...r.addedNodes].some(n => n.querySelector && (n.tagName === 'SELECT' || n.querySelector('select')))) && reapply()))
  .observe(D.documentElement, { childList: true, subtree: true });

// WebSocket: another tab's pick wins and this tab follows; reconnect with backoff.
let delay = 500;
const connect = () => cfg.ws && !unloading && safely(() => Object.assign(new WebSocket(location.origin.replace(/^http/, 'ws') + cfg.ws), {
  onopen: () => { delay = 500; },
  onmessage: ev => safely(() => {
    const msg = JSON.parse(ev.data);
    if (msg?.type === 'model' && str(msg.session) && setKnown(msg.session, msg.model, msg.version) && msg.session === cur) reapply();
  }),
  onclose: () => { setTimeout(connect, delay); delay = Math.min(delay * 2, 10000); },
}));
connect();

W.hermesGuard = Object.freeze({
  pending: () => [...pending.keys()],
  whenSettled: () => pending.size ? new Promise(r => waiters.push(r)) : Promise.resolve(),
  userIntent: () => { mark = now(); },
  state: () => ({ session: cur, model: stored() ?? null, held: held.length, pending: [...pending.keys()] }),
  _internals,
});
})();
