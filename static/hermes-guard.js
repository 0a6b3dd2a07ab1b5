// hermes-plugin browser guard; how and why: docs/browser-guard.md
(() => {
const W = window, D = document, SEL = '#modelSelect, [data-hermes-model]';
if (W.hermesGuard) return; // injected twice
const now = () => performance.now();
const warn = e => console.warn('hermes-guard:', e);
const safely = f => { try { return f(); } catch (e) { warn(e); } };
const str = (v, d) => typeof v === 'string' && v ? v : d;

// Python regex -> JS named groups
const toJsRegex = src => new RegExp(String(src).replace(/\\.|\(\?P<(\w+)>|\(\?P=(\w+)\)/g,
  (m, n, r) => n ? `(?<${n}>` : r ? `\\k<${r}>` : m));

// "a.b" walks objects, "x[]" the list at x
const walk = (obj, path) => String(path).split('.').reduce((cur, seg) => {
  const many = seg.endsWith('[]'), key = many ? seg.slice(0, -2) : seg;
  return cur.flatMap(v => {
    if (key) v = v && typeof v === 'object' && !Array.isArray(v) && Object.hasOwn(v, key) ? v[key] : undefined;
    return many ? (Array.isArray(v) ? v : []) : v === undefined ? [] : [v];
  });
}, [obj]);
const first = ([v]) => typeof v === 'number' ? String(v) : str(v);

const parseConfig = text => {
  const c = JSON.parse(text);
  if (c?.constructor !== Object) throw Error('config is not an object');
  const out = {
    prefix: str(c.prefix, '/hermes-plugin').replace(/\/+$/, ''), ws: str(c.ws), picker: str(c.picker),
    modelSelect: str(c.modelSelect, SEL), timeout: c.fetchTimeoutMs > 0 ? +c.fetchTimeoutMs : 20000,
  };
  D.querySelector(out.modelSelect); // fail here, not in host events
  for (const kind of ['writes', 'live', 'static', 'sessions']) {
    out[kind] = [].concat(c[kind] || []).flatMap(e => safely(() => str(e.url) && [{ ...e, kind, re: toJsRegex(e.url) }]) || []);
  }
  return out;
};

const decideIntent = c => {
  const h = String(c.header || '').toLowerCase(), within = (t, ms) => t != null && c.now - t <= ms;
  return h === 'user' || h === 'auto' ? h : within(c.markAt, 2000) || within(c.gestureAt, 1500) ||
    (c.proposed != null && c.proposed === c.pick?.value && within(c.pick.at, 3000)) ? 'user' : 'auto';
};
const expose = off => {
  W.hermesGuard = Object.freeze({
    pending: () => [...pending.keys()],
    whenSettled: () => pending.size ? new Promise(r => waiters.push(r)) : Promise.resolve(),
    userIntent: () => { markAt = now(); },
    state: () => ({ ...off, session: cur, model: stored() ?? null, held: held.length }),
    _internals: { toJsRegex, walk, parseConfig, decideIntent },
  });
};

const pending = new Map(), waiters = [], held = [], known = new Map(), versions = new Map(), pickAt = new Map(), ofetch = W.fetch;
let cfg, cur = null, pick, gestureAt, markAt, unloading = false, unavailable, budget = 0, busy = false;
const stored = () => known.get(cur);
try {
  cfg = parseConfig(D.getElementById('hermes-plugin-config').textContent);
} catch (e) { // no usable config: stay out of the way
  warn(e);
  return expose({ disabled: e.message });
}

const HDR = 'X-Hermes-Intent', FAKE = 'data-hermes-unavailable', NOTICE = 'hermes-notice';
const emit = (name, detail = {}) => D.dispatchEvent(new CustomEvent('hermes:' + name, { detail }));
const dec = s => safely(() => decodeURIComponent(s)) ?? s;

const classify = (method, url) => {
  const u = new URL(url, location.href), own = cfg.prefix + '/api/catalog';
  let m, target = u.pathname + u.search;
  if (u.origin !== location.origin) return;
  method = (method || 'GET').toUpperCase();
  for (const e of cfg.writes) {
    if ((e.method || 'POST').toUpperCase() === method && (m = e.re.exec(target))) return { kind: 'write', e, m };
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

const pend = key => {
  const n = pending.get(key) || 0;
  let over = false;
  pending.set(key, n + 1);
  if (!n) emit('pending', { provider: key });
  const done = () => {
    if (over) return;
    over = true;
    clearTimeout(timer);
    pending.set(key, pending.get(key) - 1);
    if (!pending.get(key)) pending.delete(key);
    if (pending.size) return;
    safely(reapply);
    for (const h of held.splice(0)) safely(h.send); // the server decides
    emit('settled');
    for (const r of waiters.splice(0)) r();
    safely(checkUnavailable);
  };
  const timer = setTimeout(done, cfg.timeout);
  return done;
};

const setKnown = (s, m, v) => {
  if (versions.get(s) > v) return; // an older version never wins
  if (v != null) versions.set(s, v);
  str(m) ? known.set(s, m) : known.delete(s);
  budget = 0;
};
const clearUnavailable = () => {
  unavailable = null;
  for (const n of D.querySelectorAll(`[${FAKE}], .${NOTICE}`)) n.remove();
};
const setCurrent = s => { if (cur !== s) { cur = s; budget = 0; clearUnavailable(); } };

const learnSession = (c, j, t0) => {
  const s = (c.e.session && first(walk(j, c.e.session))) || (c.m.groups?.session && dec(c.m.groups.session));
  if (!s) return;
  setCurrent(s);
  if (!(pickAt.get(s) > t0) && c.e.model) // a later pick wins
    setKnown(s, first(walk(j, c.e.model)));
  reapply();
};

const sessionModel = async s => {
  try {
    const info = await (await ofetch.call(W, `${cfg.prefix}/api/sessions/${encodeURIComponent(s)}/model`)).json();
    if (info.session === s) setKnown(s, info.model, +info.version);
    return info;
  } catch (e) { return {}; }
};

const selects = () => [...D.querySelectorAll(cfg.modelSelect)].filter(n => n.options);
const option = (sel, m, fake) => [...sel.options].find(o => o.value === m && o.hasAttribute(FAKE) === !!fake);
const show = (sel, m) => {
  sel.value = m;
  for (const t of ['input', 'change']) sel.dispatchEvent(new Event(t, { bubbles: true }));
  emit('reapplied', { session: cur, model: m });
};

function reapply() {
  const m = stored();
  if (m == null || busy || budget > 50) return; // host fights back
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
  Object.assign(o, { title: why, style: 'color:GrayText' }).setAttribute(FAKE, '');
  Object.assign(n, { className: NOTICE, textContent: `Model ${m} is unavailable${why && ': ' + why}. Your saved choice was kept.` })
    .setAttribute('role', 'status');
  if (sel.nextElementSibling?.className === NOTICE) sel.nextElementSibling.remove();
  sel.append(o);
  sel.after(n);
  show(sel, m);
};

const checkUnavailable = async (s = cur) => {
  if (stored() == null || !selects().some(sel => !option(sel, stored()))) return;
  const info = await sessionModel(s);
  if (cur !== s || pending.size || stored() == null) return;
  if (info.availability === 'unknown') unavailable = { s, m: stored(), why: str(info.reason, '') };
  reapply();
};

const describeWrite = (c, body, header) => {
  const json = safely(() => body && JSON.parse(body));
  const read = spec => {
    const [kind, p] = String(spec).split(/:(.*)/);
    return kind === 'path' ? c.m.groups?.[p] && dec(c.m.groups[p]) : kind === 'body' && json ? first(walk(json, p)) : undefined;
  };
  const session = read(c.e.session), model = read(c.e.model), t = now();
  const intent = decideIntent({ header, proposed: model, pick, gestureAt, markAt, now: t });
  if (intent === 'user') {
    markAt = undefined; // one-shot
    if (session != null && model != null) {
      if (cur == null) setCurrent(session);
      setKnown(session, model);
      pickAt.set(session, t);
    }
  }
  return { session, intent, detail: { session, model }, hold: intent === 'auto' && model != null && pending.size && known.get(session) !== model };
};

const hold = (w, send) => {
  const h = { send };
  if (!unloading) held.push(h);
  emit('write-held', w.detail);
  return h;
};
const unhold = h => held.includes(h) && held.splice(held.indexOf(h), 1);

const afterWrite = (w, kept) => {
  if (!kept) return;
  emit('write-kept', { ...w.detail, reason: kept });
  reapply();
  if (w.session != null) sessionModel(w.session).then(() => w.session === cur && reapply());
};

const fetchWrite = async (c, input, init) => {
  const req = input instanceof Request && input;
  let w, i;
  try {
    const b = await (init?.body ?? (req && req.clone().text())), h = new Headers(init?.headers || req?.headers);
    w = describeWrite(c, typeof b === 'string' && b, h.get(HDR));
    if (!h.has(HDR)) h.set(HDR, w.intent);
    i = { ...init, headers: h };
  } catch (e) { warn(e); return ofetch.call(W, input, init); }
  const send = async () => {
    const r = await ofetch.call(W, input, i);
    safely(() => afterWrite(w, r.headers.get('X-Hermes-Model-Kept')));
    return r;
  };
  return !w.hold ? send() : new Promise((resolve, reject) => {
    const sig = i.signal || req?.signal, h = hold(w, () => send().then(resolve, reject));
    sig?.addEventListener('abort', () => { unhold(h); reject(sig.reason); });
  });
};

const fetchCatalog = (c, input, init) => {
  const done = pend(c.key), after = () => setTimeout(done); // after the host's .json()
  return ofetch.call(W, input, init).then(r => {
    safely(() => r.clone().arrayBuffer().then(after, after)) || done();
    return r;
  }, e => { done(); throw e; });
};

// learn the stored model before the host sees it
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
      if (info.get(x)?.held) unhold(info.get(x).held);
      info.set(x, { c, sync: async === false, headers: {} });
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
      if (c?.kind === 'catalog') x.addEventListener('loadend', pend(c.key));
      if (c?.kind !== 'write') return;
      const w = describeWrite(c, typeof body === 'string' && body, i.headers['x-hermes-intent']);
      if (!i.headers['x-hermes-intent']) setHeader.call(x, HDR, w.intent);
      x.addEventListener('load', () => afterWrite(w, x.getResponseHeader('X-Hermes-Model-Kept')));
      if (w.hold && !i.sync) return i.held = hold(w, () => { i.held = null; send.apply(x, args); });
    });
    if (!waiting) return send.apply(x, args);
  };
}

for (const t of ['pointerdown', 'click', 'keydown']) {
  D.addEventListener(t, e => { if (e.isTrusted && cfg.picker && e.target.closest?.(cfg.picker)) gestureAt = now(); }, true);
}
for (const t of ['input', 'change']) D.addEventListener(t, onPick, true);
function onPick(e) {
  const t = e.target, n = now();
  if (!t.matches?.(cfg.modelSelect) || !(e.isTrusted || n - gestureAt <= 1500)) return;
  pick = { value: t.value, at: n };
  if (unavailable && t.value !== unavailable.m) clearUnavailable();
  if (cur != null) { setKnown(cur, t.value); pickAt.set(cur, n); }
}
W.addEventListener('pagehide', () => { unloading = true; held.length = 0; });
new MutationObserver(recs => safely(() => recs.some(r => r.target.closest?.('select') ||
  [...r.addedNodes].some(n => n.querySelector && (n.tagName === 'SELECT' || n.querySelector('select')))) && reapply()))
  .observe(D.documentElement, { childList: true, subtree: true, attributeFilter: ['value'] });

let delay = 500;
const connect = () => cfg.ws && !unloading && safely(() => Object.assign(new WebSocket(location.origin.replace(/^http/, 'ws') + cfg.ws), {
  onopen: () => { delay = 500; },
  onmessage: ev => safely(() => {
    const msg = JSON.parse(ev.data);
    if (msg?.type !== 'model' || !str(msg.session)) return;
    setKnown(msg.session, msg.model, +msg.version);
    if (msg.session === cur) reapply();
  }),
  onclose: () => { setTimeout(connect, delay); delay = Math.min(delay * 2, 10000); },
}));
connect();

expose();
})();
