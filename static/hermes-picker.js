// hermes-plugin picker adapter: makes a custom (non-<select>) model picker show the session's saved model,
// marks it unavailable when the picker cannot offer it, and marks the next write carrying a person's pick
// as the user's (X-Hermes-Intent: user, the host's own word, which the guard honours). Loaded after hermes-guard.js, only on pages whose
// config declares `pickerAdapter`. Behaviour and reasons: docs/browser-guard.md.
(() => {
'use strict';
const W = window, D = document, G = W.hermesGuard;
if (!G || W.hermesPicker) return;

const UNAVAILABLE = 'data-hermes-unavailable';
const NOTICE = 'hermes-notice hermes-picker-notice';
const LIST_WAIT_MS = 4000; // how long an opened list may take to fill (its page may refetch it)

const warn = e => console.warn('hermes-picker:', e);
const safely = f => { try { return f(); } catch (e) { warn(e); } };
const frame = () => new Promise(r => requestAnimationFrame(() => r()));

let cfg, A;
try {
  cfg = JSON.parse(D.getElementById('hermes-plugin-config').textContent);
  A = cfg.pickerAdapter;
} catch (e) { warn(e); }
if (!A || !A.shown || !A.option || !A.option_value) return;

// The guarded write routes, their Python regexes as JS ones (named groups and back-references).
const toRegex = src => new RegExp(String(src).replace(/\(\?P</g, '(?<').replace(/\(\?P=(\w+)\)/g, '\\k<$1>'));
const writes = [].concat(cfg.writes || []).flatMap(e => safely(() => [{ method: (e.method || 'POST').toUpperCase(), re: toRegex(e.url) }]) || []);

const labels = new Map(); // model id -> the text the picker shows for it (learnt after a choice)
let session, tried = new Set(), picked = false, choosing = false, busy = false, queued = false;
let held = null; // the model of a person's pick, until a write carries it

// ---- reading and driving the picker ----

const q = sel => D.querySelector(sel);
function shownModel() {
  const el = q(A.shown);
  if (!el) return null;
  let text = (A.shown_attr ? el.getAttribute(A.shown_attr) : el.textContent) || '';
  if (A.shown_prefix && text.startsWith(A.shown_prefix)) text = text.slice(A.shown_prefix.length);
  return text.trim();
}
const shows = m => { const s = shownModel(); return s === m || (labels.has(m) && s === labels.get(m)); };
const options = () => [...D.querySelectorAll(A.option)];
const optionFor = m => options().find(o => o.getAttribute(A.option_value) === m);

// A person's pointer passes over the picker before opening it; some pages refresh their list then.
function hover(el) {
  for (const n of [el, ...el.querySelectorAll('*')])
    for (const t of ['pointerover', 'pointerenter', 'mouseover', 'mouseenter'])
      n.dispatchEvent(new MouseEvent(t, { bubbles: t.endsWith('over') }));
}

async function waitFor(cond, ms) {
  const end = performance.now() + ms;
  for (let v = cond(); ; v = cond()) {
    if (v || performance.now() > end) return v;
    await frame();
  }
}

// Open the list, click the option for `m` (as a person would), close it again when it has none.
async function choose(m) {
  const opener = q(A.open || A.shown);
  if (!opener) return false;
  hover(opener);
  let option = optionFor(m), opened = false;
  if (!option) {
    opener.click();
    opened = true;
    // The list is complete once it shows options and no catalog is loading: then look for `m` once.
    await waitFor(() => !G.pending().length && options().length, LIST_WAIT_MS);
    option = optionFor(m);
  }
  if (!option) {
    if (opened && options().length) opener.click(); // leave the page as it was
    return false;
  }
  choosing = true;
  try { option.click(); } finally { choosing = false; }
  await frame();
  const shown = shownModel();
  if (shown) labels.set(m, shown);
  return true;
}

// ---- marking the saved model unavailable ----

function clearMark() {
  q(`[${UNAVAILABLE}]`)?.removeAttribute(UNAVAILABLE);
  for (const n of D.querySelectorAll('.hermes-picker-notice')) n.remove();
}

function mark(m) {
  const el = q(A.shown);
  if (!el || el.getAttribute(UNAVAILABLE) === m) return;
  clearMark();
  el.setAttribute(UNAVAILABLE, m);
  const n = D.createElement('div');
  n.className = NOTICE;
  n.setAttribute('role', 'status');
  n.textContent = `Saved model ${m} (unavailable) — the picker cannot offer it right now. Your saved choice was kept.`;
  n.style.cssText = 'position:fixed;left:1em;bottom:1em;z-index:2147483647;padding:.4em .8em;background:#fff8c4;color:#222;border:1px solid #c9b400;border-radius:4px;font:13px sans-serif';
  D.body.append(n);
}

// ---- keeping the picker on the saved model ----

async function check() {
  const st = G.state(), m = st.model;
  if (st.session !== session) { session = st.session; tried = new Set(); picked = false; held = null; clearMark(); }
  if (!session || !m || picked || G.pending().length || !q(A.shown)) return;
  if (shows(m)) return clearMark();
  if (tried.has(m)) return; // one try per saved model and session: a page that refuses it is not fought
  tried.add(m);
  if (!(await choose(m)) && session === st.session && !picked) mark(m);
}

// Coalesce bursts of DOM changes into one check at a time.
function schedule() {
  if (busy) { queued = true; return; }
  busy = true;
  requestAnimationFrame(async () => {
    try { await check(); } catch (e) { warn(e); }
    busy = false;
    if (queued) { queued = false; schedule(); }
  });
}

// ---- a person's pick, held until the next write that carries it ----

function onClick(e) {
  if (!e.isTrusted || choosing) return;
  const option = e.target.closest?.(A.option), m = option?.getAttribute(A.option_value);
  if (!m) return;
  held = m; // however long the person then takes to type, the write carrying it is theirs
  picked = true;
  clearMark();
  requestAnimationFrame(() => { const shown = shownModel(); if (shown) labels.set(m, shown); });
}

// A guarded write (method and URL of a declared route) whose JSON body names the held model.
function carriesPick(method, url, body) {
  if (held == null || typeof body !== 'string' || !body.includes(JSON.stringify(held))) return false;
  const u = new URL(url, location.href), target = u.pathname + u.search;
  method = String(method || 'GET').toUpperCase();
  return u.origin === location.origin && writes.some(w => w.method === method && w.re.test(target));
}

// The host's own word on intent is one the guard honours: the write carrying the pick says `user`.
const INTENT = 'X-Hermes-Intent', pageFetch = W.fetch;
if (pageFetch) W.fetch = function (input, init) {
  const marked = safely(() => {
    if (!carriesPick(init?.method || input?.method, input?.url || input, init?.body)) return;
    held = null;
    const headers = new Headers(init.headers || input?.headers);
    if (!headers.has(INTENT)) headers.set(INTENT, 'user');
    return { ...init, headers };
  });
  return marked ? pageFetch.call(this, input, marked) : pageFetch.apply(this, arguments);
};
const XP = W.XMLHttpRequest?.prototype, { open, send, setRequestHeader } = XP || {}, X = Symbol('hermes-picker');
if (XP) Object.assign(XP, {
  open(method, url) {
    safely(() => { this[X] = { method, url }; });
    return open.apply(this, arguments);
  },
  setRequestHeader(k, v) {
    if (this[X] && String(k).toLowerCase() === INTENT.toLowerCase()) this[X].intent = true;
    return setRequestHeader.apply(this, arguments);
  },
  send(body) {
    safely(() => {
      const x = this[X];
      if (x && !x.intent && carriesPick(x.method, x.url, body)) { held = null; setRequestHeader.call(this, INTENT, 'user'); }
    });
    return send.apply(this, arguments);
  },
});

D.addEventListener('click', e => safely(() => onClick(e)), true);
// The server kept the saved model: show it again, even after a pick.
D.addEventListener('hermes:write-kept', () => { picked = false; tried = new Set(); schedule(); });
for (const t of ['hermes:settled', 'hermes:reapplied']) D.addEventListener(t, schedule);
new MutationObserver(schedule).observe(D.documentElement, { childList: true, subtree: true, attributes: true,
  attributeFilter: A.shown_attr ? [A.shown_attr] : undefined, characterData: !A.shown_attr });

W.hermesPicker = Object.freeze({ shownModel, choose, state: () => ({ session, picked, held, busy, tried: [...tried] }) });
})();
