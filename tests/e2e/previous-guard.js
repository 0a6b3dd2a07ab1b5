// The guard script as it shipped before the page-state intent rule, alias rules and session learning.
// Tests serve it to show what each foreign-style page did with the previous guard. Not shipped.
(() => {
const W = window, D = document;
if (W.hermesGuard) return;
const now = () => performance.now();
const warn = e => console.warn('hermes-guard:', e);
const safely = f => { try { return f(); } catch (e) { warn(e); } };
const str = (v, d) => typeof v === 'string' && v ? v : d;
const dec = s => safely(() => decodeURIComponent(s)) ?? s;

const toJsRegex = src => new RegExp(String(src).replace(/\\.|\(\?P<(\w+)>|\(\?P=(\w+)\)/g,
  (m, n, r) => n ? `(?<${n}>` : r ? `\\k<${r}>` : m));

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
    modelSelect: str(c.modelSelect, '#modelSelect, [data-hermes-model]'),
    timeout: c.fetchTimeoutMs > 0 ? +c.fetchTimeoutMs : 20000,
  };
  D.querySelector(out.modelSelect);
  for (const kind of ['writes', 'live', 'static', 'sessions'])
    out[kind] = [].concat(c[kind] || []).flatMap(e => safely(() => str(e.url) && [{ ...e, kind, re: toJsRegex(e.url) }]) || []);
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
    whenSettled: () => new Promise(r => pending.size ? waiters.push(r) : r()),
    userIntent: () => { markAt = now(); },
    state: () => ({ ...off, session: cur, model: stored() ?? null, held: held.length }),
    _internals: { toJsRegex, walk, parseConfig, decideIntent },
  });
};

const pending = new Map(), waiters = [], held = [], known = new Map(), versions = new Map(), pickAt = new Map(), ofetch = W.fetch;
let cfg, cur = null, pick, gestureAt, markAt, unloading, unavailable, budget = 0, frames = 0;
const stored = () => known.get(cur), gesture = () => now() - gestureAt <= 1500;
try {
  cfg = parseConfig(D.getElementById('hermes-plugin-config').textContent);
} catch (e) {
  warn(e);
  return expose({ disabled: e.message });
}

const HDR = 'X-Hermes-Intent', FAKE = 'data-hermes-unavailable', NOTICE = 'hermes-notice';
const emit = (name, detail = {}) => D.dispatchEvent(new CustomEvent('hermes:' + name, { detail }));
const group = (m, k) => (k = m.groups?.[k]) && dec(k);

const classify = (method, url) => {
  const u = new URL(url, location.href), own = cfg.prefix + '/api/catalog', path = u.pathname, target = path + u.search;
  let m;
  if (u.origin !== location.origin) return;
  method = (method || 'GET').toUpperCase();
  for (const e of cfg.writes)
    if ((e.method || 'POST').toUpperCase() === method && (m = e.re.exec(target))) return { kind: 'write', e, m };
  if (path === own || path.startsWith(own + '/')) return { kind: 'catalog', key: dec(path.slice(own.length + 1)) || 'hermes:catalog' };
  for (const e of [...cfg.live, ...cfg.static, ...cfg.sessions]) {
    if (!(m = e.re.exec(target))) continue;
    return { e, m, kind: e.kind === 'sessions' ? 'session' : 'catalog', key: group(m, 'provider') || `${e.kind}:${e.url}` };
  }
};

const pend = key => {
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
    for (const send of held.splice(0)) safely(send);
    emit('settled');
    for (const r of waiters.splice(0)) r();
    safely(checkUnavailable);
  };
  return done;
};

const setKnown = (s, m, v) => {
  if (versions.get(s) > v) return;
  if (v != null) versions.set(s, v);
  str(m) ? known.set(s, m) : known.delete(s);
  budget = 0;
};
const clearUnavailable = () => {
  unavailable = null;
  for (const n of D.querySelectorAll(`[${FAKE}], .${NOTICE}`)) n.remove();
};
const setCurrent = s => { if (cur !== s) { cur = s; budget = 0; clearUnavailable(); } };

const sessionModel = s => ofetch.call(W, `${cfg.prefix}/api/sessions/${encodeURIComponent(s)}/model`).then(r => r.json()).then(info => {
  if (info.session === s) {
    setKnown(s, info.model, +info.version);
    if (s === cur) reapply();
  }
  return info;
}).catch(() => ({}));

const learnSession = (c, j, t0) => {
  const s = (c.e.session && first(walk(j, c.e.session))) || group(c.m, 'session');
  if (!s) return;
  setCurrent(s);
  if (!(pickAt.get(s) > t0) && c.e.model) setKnown(s, first(walk(j, c.e.model)));
  known.has(s) ? recheck(17) : sessionModel(s);
};

const selects = () => [...D.querySelectorAll(cfg.modelSelect)].filter(n => n.options);
const option = (sel, m, fake) => [...sel.options].find(o => o.value === m && o.hasAttribute(FAKE) === !!fake);
const show = (sel, m) => {
  sel.value = m;
  for (const t of ['input', 'change']) sel.dispatchEvent(new Event(t, { bubbles: true }));
  emit('reapplied', { session: cur, model: m });
};

// value resets fire no mutation: re-check a few frames
const tick = () => { if (frames <= 15 && !gesture()) safely(() => reapply(1)); if (--frames > 0) requestAnimationFrame(tick); };
const recheck = n => { if (!frames) requestAnimationFrame(tick); frames = Math.max(frames, n); };

function reapply(again) {
  const m = stored();
  if (m == null || budget > 50) return;
  if (!again) recheck(15);
  for (const sel of selects()) {
    const real = option(sel, m);
    if (real && unavailable) clearUnavailable();
    if (!real && unavailable?.s === cur && unavailable.m === m && !option(sel, m, 1)) markUnavailable(sel);
    else if ((real || option(sel, m, 1)) && sel.value !== m) { budget++; show(sel, m); }
  }
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
    return kind === 'path' ? group(c.m, p) : kind === 'body' && json ? first(walk(json, p)) : undefined;
  };
  const session = read(c.e.session), model = read(c.e.model), t = now();
  const intent = decideIntent({ header, proposed: model, pick, gestureAt, markAt, now: t });
  if (intent === 'user') {
    markAt = undefined;
    if (session != null && model != null) {
      if (cur == null) setCurrent(session);
      setKnown(session, model);
      pickAt.set(session, t);
    }
  }
  return { session, intent, detail: { session, model }, hold: intent === 'auto' && model != null && pending.size && known.get(session) !== model };
};

const hold = (w, send) => {
  if (!unloading) held.push(send);
  emit('write-held', w.detail);
  return send;
};
const unhold = h => held.includes(h) && held.splice(held.indexOf(h), 1);

const afterWrite = (w, kept) => {
  if (!kept) return;
  emit('write-kept', { ...w.detail, reason: kept });
  reapply();
  if (w.session != null) sessionModel(w.session);
};

const fetchWrite = async (c, input, init) => {
  const req = input instanceof Request && input;
  let w, i;
  try {
    const b = await (init?.body ?? (req && req.clone().text())), h = new Headers(init?.headers || req?.headers);
    w = describeWrite(c, typeof b === 'string' && b, h.get(HDR));
    h.has(HDR) || h.set(HDR, w.intent);
    i = { ...init, headers: h };
  } catch (e) { warn(e); return ofetch.call(W, input, init); }
  const send = () => ofetch.call(W, input, i).then(r => (safely(() => afterWrite(w, r.headers.get('X-Hermes-Model-Kept'))), r));
  return !w.hold ? send() : new Promise((resolve, reject) => {
    const sig = i.signal || req?.signal, h = hold(w, () => send().then(resolve, reject));
    sig?.addEventListener('abort', () => { unhold(h); reject(sig.reason); });
  });
};

const fetchCatalog = (c, input, init) => {
  const done = pend(c.key), after = () => setTimeout(done);
  return ofetch.call(W, input, init).then(r => {
    safely(() => r.clone().arrayBuffer().then(after, after)) || done();
    return r;
  }, e => { done(); throw e; });
};

const fetchSession = (c, input, init, t0 = now()) => ofetch.call(W, input, init).then(r => !r.ok ? r
  : r.clone().json().then(j => learnSession(c, j, t0)).catch(warn).then(() => r));

if (ofetch) W.fetch = function (input, init) {
  const c = safely(() => classify(init?.method || input?.method, input?.url || input));
  try {
    if (c) return (c.kind === 'write' ? fetchWrite : c.kind === 'session' ? fetchSession : fetchCatalog)(c, input, init);
  } catch (e) { warn(e); }
  return ofetch.apply(this, arguments);
};

const XP = W.XMLHttpRequest?.prototype, X = Symbol(), { open, send, setRequestHeader } = XP || {};
if (XP) Object.assign(XP, {
  open(method, url, async) {
    const x = this, t0 = now();
    safely(() => {
      const c = classify(method, url);
      unhold(x[X]?.held);
      x[X] = { c, sync: async === false };
      if (c?.kind === 'session') x.addEventListener('readystatechange', () => x.readyState === 4 && x.status > 199 && x.status < 300 &&
        safely(() => learnSession(c, x.responseType === 'json' ? x.response : JSON.parse(x.responseText), t0)));
    });
    return open.apply(x, arguments);
  },
  setRequestHeader(k, v) {
    if (this[X] && String(k).toLowerCase() === 'x-hermes-intent') this[X].intent = v;
    return setRequestHeader.apply(this, arguments);
  },
  send(body) {
    const x = this, args = arguments, i = x[X], c = i?.c;
    const waiting = safely(() => {
      if (c?.kind === 'catalog') x.addEventListener('loadend', pend(c.key));
      if (c?.kind !== 'write') return;
      const w = describeWrite(c, typeof body === 'string' && body, i.intent);
      if (!i.intent) setRequestHeader.call(x, HDR, w.intent);
      x.addEventListener('load', () => afterWrite(w, x.getResponseHeader('X-Hermes-Model-Kept')));
      if (w.hold && !i.sync) return i.held = hold(w, () => { i.held = null; send.apply(x, args); });
    });
    if (!waiting) return send.apply(x, args);
  },
});

for (const t of ['pointerdown', 'click', 'keydown']) D.addEventListener(t, e => {
  if (e.isTrusted && cfg.picker && e.target.closest?.(cfg.picker)) gestureAt = now();
}, true);
for (const t of ['input', 'change']) D.addEventListener(t, onPick, true);
function onPick(e) {
  const t = e.target, n = now();
  if (!t.matches?.(cfg.modelSelect) || !(e.isTrusted || gesture())) return;
  pick = { value: t.value, at: n };
  if (unavailable && t.value !== unavailable.m) clearUnavailable();
  if (cur != null) { setKnown(cur, t.value); pickAt.set(cur, n); }
}
W.addEventListener('pagehide', () => { unloading = true; held.length = 0; });
new MutationObserver(recs => safely(() => recs.some(r => r.target.closest?.('select') ||
  [...r.addedNodes].some(n => n.tagName === 'SELECT' || n.querySelector?.('select'))) && reapply()))
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
