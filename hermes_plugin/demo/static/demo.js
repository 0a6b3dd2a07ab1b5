// The demo host's page: it deliberately reproduces the naive model-picker flow of hermes-webui before its
// fix (https://github.com/nesquena/hermes-webui/pull/1174): static list first, live list in the background, and a syncTopbar() that "corrects"
// a model it cannot find by persisting the first option. Nothing here knows about hermes-plugin except
// one optional `hermesGuard.userIntent()` call for the /model command, as docs/host-guide.md asks of hosts.
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const body = document.body;
  const sel = $('modelSelect');
  const defaultSel = $('defaultModelSelect');
  const providerSel = $('providerSelect');
  const LIVE_CACHE_TTL_MS = Number(body.dataset.liveCacheTtl || 0) * 1000;
  const CACHE_PREFIX = 'demo.liveModels.';
  const S = { session: null, groups: null, activeProvider: null, live: {} };
  // Exposed for the end-to-end tests and the race benchmark (read-only observation of the host's state).
  const demo = window.demo = {
    S, inflightWrites: 0, events: [], topbarHistory: [], defaultChanges: 0, liveState: {},
    persistModel, loadSession, syncTopbar,
  };

  // -- guard events, shown so a person running the demo can see what the guard did -------------------
  function log(kind, detail) {
    demo.events.push({ kind, detail: detail || null, t: performance.now() });
    const li = document.createElement('li');
    li.textContent = kind + (detail ? ' ' + JSON.stringify(detail) : '');
    $('guardLog').appendChild(li);
  }
  ['hermes:pending', 'hermes:settled', 'hermes:reapplied', 'hermes:write-held', 'hermes:write-kept']
    .forEach((name) => document.addEventListener(name, (e) => log(name, e.detail)));

  function option(id, label) {
    const o = document.createElement('option');
    o.value = id;
    o.textContent = label || id;  // ids and labels come from providers: always text, never markup
    return o;
  }

  function postJSON(url, payload) {
    return fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' },
                        body: JSON.stringify(payload) });
  }

  // -- writes -------------------------------------------------------------------------------------------
  function persistModel(model) {
    if (!S.session) return Promise.resolve(null);
    demo.inflightWrites++;
    const payload = { session_id: S.session.session_id, model: model, provider: S.activeProvider };
    return postJSON('/api/session/update', payload)
      .then((r) => r.json().catch(() => null))
      .catch((err) => { log('write-failed', { error: String(err) }); return null; })
      .finally(() => { demo.inflightWrites--; });
  }

  // -- the static list -----------------------------------------------------------------------------------
  function groupFor(provider) {
    return (S.groups || []).find((g) => g.provider === provider) || null;
  }

  function fillModelSelect() {
    const group = groupFor(S.activeProvider);
    sel.replaceChildren(...(group ? group.models.map((m) => option(m.id, m.label)) : []));
    renderPicker();
  }

  function fillDefaultSelect() {
    const all = (S.groups || []).flatMap((g) => g.models);
    defaultSel.replaceChildren(...all.map((m) => option(m.id, m.label)));
    defaultSel.value = body.dataset.defaultModel;
  }

  function loadModels() {
    return fetch('/api/models')
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error('static list: HTTP ' + r.status))))
      .then((data) => {
        S.groups = data.groups;
        S.activeProvider = (S.session && S.session.provider) || S.activeProvider || data.groups[0].provider;
        providerSel.replaceChildren(...data.groups.map((g) => option(g.provider, g.label)));
        providerSel.value = S.activeProvider;
        fillModelSelect();
        fillDefaultSelect();
        fetchLive(S.activeProvider);  // in the background, like the upstream app
        syncTopbar();
      })
      .catch((err) => setStatus('Model list unavailable: ' + err.message));
  }

  // -- the live list ---------------------------------------------------------------------------------
  function readCache(provider) {
    if (!LIVE_CACHE_TTL_MS) return null;
    try {
      const cached = JSON.parse(localStorage.getItem(CACHE_PREFIX + provider));
      if (cached && Date.now() - cached.at < LIVE_CACHE_TTL_MS && Array.isArray(cached.models)) return cached.models;
    } catch (e) { /* a broken cache entry is a cache miss */ }
    return null;
  }

  function writeCache(provider, models) {
    try { localStorage.setItem(CACHE_PREFIX + provider, JSON.stringify({ at: Date.now(), models })); } catch (e) { /* full */ }
  }

  function fetchLive(provider) {
    const cached = readCache(provider);
    if (cached) {  // the upstream app's cache-hit path: add synchronously, no fetch
      addLiveModels(provider, cached);
      demo.liveState[provider] = 'cached';
      return Promise.resolve();
    }
    demo.liveState[provider] = 'pending';
    setStatus('Loading live models for ' + provider + '…');
    return fetch('/api/models/live?provider=' + encodeURIComponent(provider))
      .then((r) => r.json().then((data) => ({ ok: r.ok, data })))
      .then(({ ok, data }) => {
        if (!ok) throw new Error(data.error || data.detail || 'live list failed');
        if (data.state === 'fresh') writeCache(provider, data.models);
        addLiveModels(provider, data.models);
        demo.liveState[provider] = data.state === 'fresh' ? 'loaded' : data.state;
        setStatus(data.state === 'fresh' ? '' : 'Live models for ' + provider + ' are ' + data.state + ': ' + (data.error || ''));
      })
      .catch((err) => {
        demo.liveState[provider] = 'failed';
        setStatus('Live models for ' + provider + ' unavailable: ' + err.message);
      });
  }

  function addLiveModels(provider, models) {
    S.live[provider] = models;
    if (provider !== S.activeProvider) return;  // like the upstream app: only the active provider's picker
    const have = new Set(Array.from(sel.options, (o) => o.value));
    for (const m of models) if (!have.has(m.id)) { sel.appendChild(option(m.id, m.label)); have.add(m.id); }
    const known = new Set(Array.from(defaultSel.options, (o) => o.value));
    const keep = defaultSel.value;
    for (const m of models) if (!known.has(m.id)) defaultSel.appendChild(option(m.id, m.label));
    defaultSel.value = keep;
    renderPicker();
    syncTopbar();
  }

  // -- the bug under test -------------------------------------------------------------------------------
  function syncTopbar() {
    if (!S.session) return;
    const model = S.session.model;
    if (Array.from(sel.options).some((o) => o.value === model)) {
      sel.value = model;
    } else if (sel.options.length) {
      // "Correct" a model the picker does not list (yet) by persisting the first option: the upstream bug.
      const first = sel.options[0].value;
      sel.value = first;
      S.session.model = first;
      persistModel(first);
    }
    demo.topbarHistory.push(sel.value);
  }

  // -- sessions ----------------------------------------------------------------------------------------
  function loadSessionList() {
    return fetch('/api/sessions').then((r) => r.json()).then((data) => {
      $('sessionList').replaceChildren(...data.sessions.map((s) => {
        const li = document.createElement('li');
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'session';
        b.dataset.session = s.session_id;
        b.textContent = s.title;
        b.addEventListener('click', () => loadSession(s.session_id));  // a session switch, not a model pick
        li.appendChild(b);
        return li;
      }));
      markActiveSession();
    });
  }

  function markActiveSession() {
    document.querySelectorAll('#sessionList .session').forEach((b) => {
      b.classList.toggle('active', !!S.session && b.dataset.session === S.session.session_id);
    });
  }

  function loadSession(id) {
    return fetch('/api/session?session_id=' + encodeURIComponent(id))
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error('session: HTTP ' + r.status))))
      .then((data) => {
        S.session = data.session;
        $('sessionTitle').textContent = S.session.title;
        renderMessages(S.session.messages || []);
        markActiveSession();
        const provider = S.session.provider;
        if (S.groups && provider && provider !== S.activeProvider) {
          S.activeProvider = provider;
          providerSel.value = provider;
          fillModelSelect();
          fetchLive(provider);
        }
        setTimeout(syncTopbar, 0);  // the upstream app's _resolveSessionModelForDisplaySoon
      })
      .catch((err) => setStatus(err.message));
  }

  function renderMessages(messages) {
    $('messages').replaceChildren(...messages.map((m) => {
      const li = document.createElement('li');
      li.className = m.role;
      li.textContent = m.text;
      return li;
    }));
  }

  // -- the pickers -------------------------------------------------------------------------------------
  function renderPicker() {
    $('modelPickerList').replaceChildren(...Array.from(sel.options, (o) => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'model-item';
      b.dataset.model = o.value;
      b.textContent = o.textContent;
      li.appendChild(b);
      return li;
    }));
  }

  function setPickerOpen(open) {
    $('modelPickerMenu').hidden = !open;
    $('modelPickerButton').setAttribute('aria-expanded', String(open));
  }

  $('modelPickerButton').addEventListener('click', () => setPickerOpen($('modelPickerMenu').hidden));
  $('modelPickerList').addEventListener('click', (e) => {
    const item = e.target.closest('.model-item');
    if (!item) return;
    sel.value = item.dataset.model;
    sel.dispatchEvent(new Event('change', { bubbles: true }));
    setPickerOpen(false);
  });

  sel.addEventListener('change', () => {
    if (!S.session || sel.value === S.session.model) return;
    S.session.model = sel.value;
    persistModel(sel.value);
  });

  providerSel.addEventListener('change', () => {
    const provider = providerSel.value;
    if (provider === S.activeProvider) return;
    S.activeProvider = provider;
    fillModelSelect();
    fetchLive(provider);
    // Switching provider picks that provider's first model, like choosing it in the dropdown.
    if (sel.options.length) sel.dispatchEvent(new Event('change', { bubbles: true }));
  });

  defaultSel.addEventListener('change', () => {
    demo.defaultChanges++;
    postJSON('/api/settings', { default_model: defaultSel.value });
  });

  $('settingsButton').addEventListener('click', () => { $('settingsPanel').hidden = !$('settingsPanel').hidden; });

  $('newChatButton').addEventListener('click', () => {
    postJSON('/api/session/new', { model: defaultSel.value || body.dataset.defaultModel })
      .then((r) => r.json())
      .then((data) => loadSessionList().then(() => loadSession(data.session.session_id)));
  });

  // -- the composer -------------------------------------------------------------------------------------
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $('composerInput');
    const text = input.value.trim();
    input.value = '';
    if (!text || !S.session) return;
    const command = /^\/model\s+(\S+)$/.exec(text);
    if (command) {
      // A command is a pick too: tell the guard, as docs/host-guide.md asks hosts to.
      if (window.hermesGuard) window.hermesGuard.userIntent();
      const model = command[1];
      if (!Array.from(sel.options).some((o) => o.value === model)) sel.appendChild(option(model));
      sel.value = model;
      S.session.model = model;
      persistModel(model);
      return;
    }
    demo.inflightWrites++;
    postJSON('/api/chat/start', { session_id: S.session.session_id, model: S.session.model, message: text })
      .then((r) => r.json())
      .then((data) => {
        const li = document.createElement('li');
        li.className = 'assistant';
        li.textContent = data.reply || data.detail || 'error';
        $('messages').appendChild(li);
      })
      .finally(() => { demo.inflightWrites--; });
  });

  function setStatus(text) { $('liveStatus').textContent = text; }

  // -- boot: static list, session list and the current session, all at once (like the upstream app) ----------------
  loadModels();
  loadSessionList();
  if (body.dataset.initialSession) loadSession(body.dataset.initialSession);
})();
