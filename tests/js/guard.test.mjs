// Unit tests of static/hermes-guard.js: the script runs in a vm context with a minimal fake DOM.
// Run: node --test tests/js/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import vm from 'node:vm';
import { readFileSync } from 'node:fs';

// HERMES_GUARD_JS runs the same tests on another build of the script (the served, minified one).
const SRC = readFileSync(process.env.HERMES_GUARD_JS || new URL('../../static/hermes-guard.js', import.meta.url), 'utf8');
const plain = v => JSON.parse(JSON.stringify(v)); // values from the vm realm have other prototypes

const CONFIG = {
  prefix: '/hermes-plugin', ws: null, modelSelect: '#modelSelect', picker: null,
  writes: [{ method: 'POST', url: '^/api/session/update$', session: 'body:session_id', model: 'body:model' },
           { method: 'PUT', url: '^/chats/(?P<chat_id>[^/]+)/model$', session: 'path:chat_id', model: 'body:model' }],
  live: [{ url: '/api/models/live\\?provider=(?P<provider>[^&]+)', models: 'models[].id' }],
  static: [{ url: '/api/models$', models: 'groups[].models[].id', provider: 'groups[].provider' }],
  sessions: [{ url: '/api/session\\?session_id=(?P<session>[^&]+)', model: 'session.model', session: 'session.session_id' }],
  fetchTimeoutMs: 20000,
};

// A fetch whose every call waits until the test answers it.
// The guard's own session lookups (`<prefix>/api/sessions/<id>/model`) are kept apart in `lookups`.
function fakeFetch() {
  const calls = [], lookups = [];
  const fetch = (input, init) => new Promise((resolve, reject) => {
    const url = String(input?.url || input);
    (url.includes('/hermes-plugin/api/sessions/') ? lookups : calls)
      .push({ url, init, headers: new Headers(init?.headers), resolve, reject });
  });
  fetch.calls = calls;
  fetch.lookups = lookups;
  return fetch;
}

const makeXHR = () => class FakeXHR extends EventTarget {
  open(method, url) { this.method = method; this.url = url; this.headers = {}; }
  setRequestHeader(k, v) { this.headers[k] = v; }
  send(body) { this.sent = true; this.body = body; }
  getResponseHeader(k) { return (this.responseHeaders || {})[k] ?? null; }
  finish(type = 'load') { this.status = 200; this.dispatchEvent(new Event(type)); this.dispatchEvent(new Event('loadend')); }
};
// the long fetch-timeout timers must not keep the test process alive after a test ends
const unrefTimeout = (f, ms) => { const t = setTimeout(f, ms); if (ms > 1000) t.unref(); return t; };

function load(configText = JSON.stringify(CONFIG), selects = []) {
  const doc = new EventTarget(), win = new EventTarget();
  Object.assign(doc, {
    documentElement: {},
    getElementById: id => (id === 'hermes-plugin-config' && configText != null ? { textContent: configText } : null),
    querySelector: () => null,
    querySelectorAll: sel => (sel === CONFIG.modelSelect ? selects : []),
  });
  const fetch = fakeFetch();
  const ctx = {
    document: doc, location: new URL('http://app.test/chat'), performance, setTimeout: unrefTimeout, clearTimeout,
    requestAnimationFrame: f => setTimeout(f, 16),
    console: { warn() {} }, URL, Headers, Request, Response, Event, CustomEvent, DOMException,
    MutationObserver: class { observe() {} takeRecords() { return []; } }, XMLHttpRequest: makeXHR(), fetch,
    addEventListener: win.addEventListener.bind(win), dispatchEvent: win.dispatchEvent.bind(win),
  };
  ctx.window = ctx;
  vm.createContext(ctx);
  vm.runInContext(SRC, ctx);
  const events = [];
  for (const name of ['pending', 'settled', 'write-held', 'write-kept']) {
    doc.addEventListener('hermes:' + name, e => events.push([name, plain(e.detail)]));
  }
  return { ctx, fetch, guard: ctx.hermesGuard, events, original: fetch };
}

const { toJsRegex, walk, parseConfig, decideIntent } = load().guard._internals;
const ALIASES = { ...CONFIG, aliases: ['^@(?P<provider>[^:]+):(?P<model>.+)$'] };

test('toJsRegex rewrites Python named groups and back-references only', () => {
  const re = toJsRegex('/api/models/live\\?provider=(?P<provider>[^&]+)');
  assert.equal(re.exec('/api/models/live?provider=a%2Fb&x=1').groups.provider, 'a%2Fb');
  assert.ok(toJsRegex('^(?P<a>x)-(?P=a)$').test('x-x'));
  assert.ok(!toJsRegex('^(?P<a>x)-(?P=a)$').test('x-y'));
  assert.equal(toJsRegex('\\(?P<n>').source, '\\(?P<n>'); // an escaped paren is no group
  assert.throws(() => toJsRegex('(unclosed'), { name: 'SyntaxError' });
});

test('walk follows dotted paths and [] lists', () => {
  const body = { groups: [{ provider: 'a', models: [{ id: 'a/1' }, { id: 'a/2' }] }, { provider: 'b', models: [{ id: 'b/1' }] }] };
  assert.deepEqual(plain(walk(body, 'groups[].models[].id')), ['a/1', 'a/2', 'b/1']);
  assert.deepEqual(plain(walk(body, 'groups[].provider')), ['a', 'b']);
  assert.deepEqual(plain(walk({ session: { model: 'm' } }, 'session.model')), ['m']);
  assert.deepEqual(plain(walk({ models: 'not a list' }, 'models[].id')), []);
  assert.deepEqual(plain(walk({ a: null }, 'a.b')), []);
  assert.deepEqual(plain(walk([1, 2], 'length')), []); // only plain objects are walked by key
  assert.deepEqual(plain(walk({}, 'constructor')), []); // inherited properties are not data
  assert.deepEqual(plain(walk(['x', 'y'], '[]')), ['x', 'y']);
});

test('parseConfig fills defaults and drops entries it cannot use', () => {
  const c = parseConfig(JSON.stringify({ prefix: '/hp/', live: [{ url: '(' }, { models: 'x' }, { url: '/ok$' }], fetchTimeoutMs: -5 }));
  assert.equal(c.prefix, '/hp');
  assert.equal(c.modelSelect, '#modelSelect, [data-hermes-model]');
  assert.equal(c.timeout, 20000);
  assert.deepEqual(plain(c.live.map(e => e.url)), ['/ok$']);
  assert.equal(c.writes.length, 0);
  assert.equal(parseConfig(JSON.stringify(CONFIG)).timeout, 20000);
  assert.throws(() => parseConfig('{broken'));
  assert.throws(() => parseConfig('null'));
});

test('decideIntent: header, userIntent mark, fresh pick of the same model, picker gesture', () => {
  const base = { now: 10000, proposed: 'm1' };
  assert.equal(decideIntent(base), 'auto');
  assert.equal(decideIntent({ ...base, header: 'USER' }), 'user');
  assert.equal(decideIntent({ ...base, header: 'auto', markAt: 9990 }), 'auto'); // the host's own word wins
  assert.equal(decideIntent({ ...base, markAt: 8500 }), 'user');
  assert.equal(decideIntent({ ...base, markAt: 7000 }), 'auto');
  assert.equal(decideIntent({ ...base, pick: { value: 'm1', at: 7500 } }), 'user');
  assert.equal(decideIntent({ ...base, pick: { value: 'm2', at: 9999 } }), 'auto'); // a pick of another model
  assert.equal(decideIntent({ ...base, pick: { value: 'm1', at: 6000 } }), 'auto'); // too old
  assert.equal(decideIntent({ ...base, gestureAt: 9000 }), 'user');
  assert.equal(decideIntent({ ...base, gestureAt: 8000 }), 'auto');
  assert.equal(decideIntent({ now: 100, proposed: 'm1', markAt: undefined, gestureAt: undefined }), 'auto'); // early in the page
  assert.equal(decideIntent({ ...base, named: true }), 'user'); // a real click on something naming the model
  assert.equal(decideIntent({ ...base, choice: true }), 'user'); // the page-state rule
  assert.equal(decideIntent({ ...base, header: 'auto', choice: true }), 'auto');
});

test('alias rules match a stored bare id to a decorated option value', () => {
  const { canonical, sameModel } = load(JSON.stringify(ALIASES)).guard._internals;
  assert.deepEqual(plain(canonical('@deepseek:deepseek-reasoner')), { model: 'deepseek-reasoner', provider: 'deepseek' });
  assert.deepEqual(plain(canonical('@ollama:qwen3:235b')), { model: 'qwen3:235b', provider: 'ollama' }); // first colon only
  assert.deepEqual(plain(canonical('plain-id')), { model: 'plain-id', provider: null });
  assert.ok(sameModel('@deepseek:deepseek-reasoner', 'deepseek-reasoner'));
  assert.ok(sameModel('@deepseek:x', '@deepseek:x'));
  assert.ok(!sameModel('@deepseek:x', '@other:x')); // two providers' same bare id stay apart
  assert.ok(!sameModel('@deepseek:deepseek-chat', 'deepseek-reasoner'));
  assert.ok(!sameModel(null, 'x'));
  const bare = load().guard._internals; // no rules declared: exact ids only
  assert.ok(!bare.sameModel('@deepseek:deepseek-reasoner', 'deepseek-reasoner'));
});

test('the server\'s alias resolution teaches the script another spelling', async () => {
  const { ctx, fetch, guard } = load();
  ctx.fetch('/api/session/update', { method: 'POST', body: '{"session_id":"s1","model":"gpt"}' });
  await new Promise(setImmediate);
  assert.equal(fetch.lookups.length, 1); // an unknown session is looked up before the write is judged
  fetch.lookups[0].resolve(new Response(JSON.stringify({ session: 's1', model: 'nous-kimi', version: 1, aliases: ['kimi'] })));
  await new Promise(setImmediate);
  assert.equal(fetch.calls.length, 1);
  assert.equal(fetch.calls[0].headers.get('X-Hermes-Intent'), 'auto');
  assert.deepEqual(plain(guard.state()), { session: 's1', model: 'nous-kimi', held: 0 }); // learnt from the write
  assert.ok(guard._internals.sameModel('kimi', 'nous-kimi'));
});

test('a catalog fetch is pending until its body is read, then settles', async () => {
  const { ctx, fetch, guard, events } = load();
  const p = ctx.fetch('/api/models/live?provider=openai');
  assert.deepEqual(plain(guard.pending()), ['openai']);
  const settled = guard.whenSettled();
  fetch.calls[0].resolve(new Response('{"models":[{"id":"gpt"}]}'));
  const r = await p;
  assert.deepEqual(await r.json(), { models: [{ id: 'gpt' }] }); // the host still gets its body
  await settled;
  assert.deepEqual(plain(guard.pending()), []);
  assert.deepEqual(events, [['pending', { provider: 'openai' }], ['settled', {}]]);
});

test('HTTP errors, network errors and the plugin catalog all settle', async () => {
  const { ctx, fetch, guard } = load();
  const a = ctx.fetch('/api/models');
  const b = ctx.fetch(new Request('http://app.test/hermes-plugin/api/catalog/ollama'));
  const c = ctx.fetch('/hermes-plugin/api/catalog');
  assert.deepEqual(plain(guard.pending()).sort(), ['hermes:catalog', 'ollama', 'static:/api/models$']);
  fetch.calls[0].resolve(new Response('boom', { status: 500 }));
  fetch.calls[1].reject(new TypeError('Failed to fetch'));
  fetch.calls[2].resolve(new Response('{}'));
  assert.equal((await a).status, 500);
  await assert.rejects(b, TypeError);
  await c;
  await guard.whenSettled();
  assert.deepEqual(plain(guard.pending()), []);
});

test('a fetch that never answers stops being pending after fetchTimeoutMs', async () => {
  const { ctx, guard, events } = load(JSON.stringify({ ...CONFIG, fetchTimeoutMs: 5 }));
  ctx.fetch('/api/models');
  await guard.whenSettled();
  assert.deepEqual(events.map(e => e[0]), ['pending', 'settled']);
});

test('cross-origin and unrelated requests pass through untouched', () => {
  const { ctx, fetch, guard } = load();
  ctx.fetch('http://other.test/api/models');
  ctx.fetch('/api/other', { method: 'POST', body: '{"model":"x"}' });
  assert.deepEqual(plain(guard.pending()), []);
  assert.equal(fetch.calls[1].init.headers, undefined); // no intent header on non-write routes
});

test('an automatic write while a catalog is pending is held, then released with intent auto', async () => {
  const { ctx, fetch, guard, events } = load();
  ctx.fetch('/api/models/live?provider=p');
  const write = ctx.fetch('/api/session/update', { method: 'POST', body: '{"session_id":"s1","model":"first"}' });
  await new Promise(r => ctx.document.addEventListener('hermes:write-held', r, { once: true }));
  assert.equal(fetch.calls.length, 1);
  assert.equal(guard.state().held, 1);
  assert.equal(fetch.lookups.length, 1); // the write named a session the guard had not seen
  fetch.calls[0].resolve(new Response('{"models":[]}'));
  await guard.whenSettled();
  assert.equal(fetch.calls.length, 2);
  assert.equal(fetch.calls[1].headers.get('X-Hermes-Intent'), 'auto');
  fetch.calls[1].resolve(new Response('{}', { headers: { 'X-Hermes-Model-Kept': 'model_present' } }));
  assert.equal((await write).status, 200);
  assert.deepEqual(events.find(e => e[0] === 'write-kept'), ['write-kept', { session: 's1', model: 'first', reason: 'model_present' }]);
});

test('a write the host marks as the user\'s goes out at once, even while pending', async () => {
  const { ctx, fetch } = load();
  ctx.fetch('/api/models/live?provider=p');
  ctx.fetch('/api/session/update', { method: 'POST', headers: { 'X-Hermes-Intent': 'user' }, body: '{"session_id":"s1","model":"m"}' });
  await new Promise(setImmediate);
  assert.equal(fetch.calls.length, 2);
  assert.equal(fetch.calls[1].headers.get('X-Hermes-Intent'), 'user');
});

test('userIntent() marks the next write only', async () => {
  const { ctx, fetch, guard } = load();
  guard.userIntent();
  ctx.fetch('/chats/c%201/model', { method: 'PUT', body: '{"model":"m"}' });
  await new Promise(setImmediate);
  ctx.fetch('/chats/c%201/model', { method: 'PUT', body: '{"model":"n"}' });
  await new Promise(setImmediate);
  assert.deepEqual(fetch.calls.map(c => c.headers.get('X-Hermes-Intent')), ['user', 'auto']);
  assert.equal(guard.state().session, 'c 1'); // a user write names the current session when none is known
  assert.equal(guard.state().model, 'm');
});

test('a held write whose fetch is aborted is dropped', async () => {
  const { ctx, fetch, guard } = load();
  ctx.fetch('/api/models');
  const ac = new AbortController();
  const w = ctx.fetch('/api/session/update', { method: 'POST', body: '{"session_id":"s","model":"x"}', signal: ac.signal });
  await new Promise(r => ctx.document.addEventListener('hermes:write-held', r, { once: true }));
  ac.abort();
  await assert.rejects(w, { name: 'AbortError' });
  assert.equal(guard.state().held, 0);
  fetch.calls[0].resolve(new Response('{}'));
  await guard.whenSettled();
  assert.equal(fetch.calls.length, 1); // never sent
});

test('a session response teaches the current session and its stored model before the host sees it', async () => {
  const { ctx, fetch, guard } = load();
  const p = ctx.fetch('/api/session?session_id=s9');
  fetch.calls[0].resolve(new Response('{"session":{"session_id":"s9","model":"live/only"}}'));
  await p;
  assert.deepEqual(plain(guard.state()), { session: 's9', model: 'live/only', held: 0 });
});

test('an automatic write restating the stored model is not held', async () => {
  const { ctx, fetch } = load();
  const s = ctx.fetch('/api/session?session_id=s9');
  fetch.calls[0].resolve(new Response('{"session":{"session_id":"s9","model":"m"}}'));
  await s;
  ctx.fetch('/api/models');
  ctx.fetch('/api/session/update', { method: 'POST', body: '{"session_id":"s9","model":"m"}' });
  await new Promise(setImmediate);
  assert.equal(fetch.calls.length, 3);
});

test('XMLHttpRequest catalogs are pending until loadend; held writes are sent on settle', async () => {
  const { ctx, guard } = load();
  const cat = new ctx.XMLHttpRequest();
  cat.open('GET', '/api/models/live?provider=x');
  cat.send();
  assert.deepEqual(plain(guard.pending()), ['x']);
  const w = new ctx.XMLHttpRequest();
  w.open('POST', '/api/session/update');
  w.setRequestHeader('Content-Type', 'application/json');
  w.send('{"session_id":"s","model":"fallback"}');
  assert.equal(w.sent, undefined);
  assert.equal(w.headers['X-Hermes-Intent'], 'auto');
  cat.finish('abort');
  assert.deepEqual(plain(guard.pending()), []);
  assert.equal(w.sent, true);
});

test('a missing or broken config leaves fetch and XHR alone', () => {
  for (const text of [null, '{broken', 'null']) {
    const { ctx, original, guard } = load(text);
    assert.equal(ctx.fetch, original);
    assert.ok(guard.state().disabled);
    assert.deepEqual(plain(guard.pending()), []);
  }
});

// A model select as the rule reads it: its options and the value it shows.
function fakeSelect(values, value) {
  const options = values.map(v => ({ value: v, textContent: v, hasAttribute: () => false }));
  return { options, value, matches: () => true, dispatchEvent() {}, getClientRects: () => [1] };
}

async function writeWith(select, config = CONFIG) {
  const { ctx, fetch } = load(JSON.stringify(config), [select]);
  const s = ctx.fetch('/api/session?session_id=s1');
  fetch.calls[0].resolve(new Response('{"session":{"session_id":"s1","model":"@p:stored"}}'));
  await s;
  return { ctx, fetch, send: body => ctx.fetch('/api/session/update', { method: 'POST', body }) };
}

test('the page-state rule: replacing a model the page can show is a choice, one it cannot find a correction', async () => {
  // the stored model's option is present and the select shows the proposal: a choice (a test tool, onchange())
  let { fetch, send } = await writeWith(fakeSelect(['@p:first', '@p:stored', '@p:other'], '@p:other'));
  send('{"session_id":"s1","model":"@p:other"}');
  await new Promise(setImmediate);
  assert.equal(fetch.calls.at(-1).headers.get('X-Hermes-Intent'), 'user');
  // the stored model is no option: the page's fallback
  ({ fetch, send } = await writeWith(fakeSelect(['@p:first', '@p:other'], '@p:first')));
  send('{"session_id":"s1","model":"@p:first"}');
  await new Promise(setImmediate);
  assert.equal(fetch.calls.at(-1).headers.get('X-Hermes-Intent'), 'auto');
  // the select does not show what the write proposes: not the page's visible state, not a choice
  ({ fetch, send } = await writeWith(fakeSelect(['@p:first', '@p:stored', '@p:other'], '@p:stored')));
  send('{"session_id":"s1","model":"@p:other"}');
  await new Promise(setImmediate);
  assert.equal(fetch.calls.at(-1).headers.get('X-Hermes-Intent'), 'auto');
});

test('the page-state rule waits for the stored model\'s provider and follows alias rules', async () => {
  const aliased = { ...ALIASES, modelSelect: CONFIG.modelSelect };
  // pending for the stored model's provider (from its alias rule): the list may still change, no choice
  let { ctx, fetch, send } = await writeWith(fakeSelect(['@p:first', '@p:stored', '@p:other'], '@p:other'), aliased);
  ctx.fetch('/api/models/live?provider=p');
  send('{"session_id":"s1","model":"@p:other"}');
  await new Promise(setImmediate);
  assert.equal(fetch.calls.at(-1).url, '/api/models/live?provider=p'); // held, not sent
  // the option spells the stored model differently: still "can show", so a change away is a choice
  ({ fetch, send } = await writeWith(fakeSelect(['@p:first', 'stored', '@p:other'], '@p:other'), aliased));
  send('{"session_id":"s1","model":"@p:other"}');
  await new Promise(setImmediate);
  assert.equal(fetch.calls.at(-1).headers.get('X-Hermes-Intent'), 'user');
});
