"""Flask chat hosts written another team's way, for the later bugs of the class: a chat switch whose model
lookup is slow, a stored model in no catalogue, a change handler that persists every change, a save that
waits for the user to stop picking, a picker rebuilt from scratch, one bare id under two providers, and a
page that does all of it by XMLHttpRequest (a jQuery-style ``$.ajax``).

Conversations live at ``/api/v2/conversations/<conv_id>`` (``model_id`` field); the static catalog is
``/api/v2/models``; a live list per provider at ``/api/v2/providers/<name>/models``. Reads of conversation
``slow`` (the page's and the guard's) wait at ``Convos.slow_gate``; live lists wait at ``Convos.live_gate``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, request

from hermes_plugin import ModelGuard

GATE_TIMEOUT = 30
ALIAS_RULE = r"^(?P<provider>acme|beta):(?P<model>.+)$"

BASE_CONFIG: dict[str, Any] = {
    "HERMES_PLUGIN_CACHE": "memory",
    "HERMES_PLUGIN_MODEL_SELECT": "#picker",
    "HERMES_PLUGIN_STATIC_URLS": [{"url": r"/api/v2/models$", "models": "providers[].models[].id",
                                   "provider": "providers[].name"}],
    "HERMES_PLUGIN_LIVE_URLS": [{"url": r"/api/v2/providers/(?P<provider>[^/]+)/models$", "models": "items[].id"}],
    "HERMES_PLUGIN_SESSION_URLS": [{"url": r"/api/v2/conversations/(?P<session>[^/?]+)(?:\?.*)?$",
                                    "model": "conversation.model_id"}],
}

COMMON_JS = r"""
const ui = JSON.parse(document.getElementById('ui').textContent);
const picker = document.getElementById('picker');
window.convId = location.pathname.split('/').pop();
window.conv = null;
window.turns = 0;
function fill(ids) {
  picker.length = 0;  // rebuilt from scratch each time
  for (const id of ids) picker.add(new Option(id.replace(':', ' / '), id));
}
async function catalog() {
  const body = await (await fetch('/api/v2/models')).json();
  return body.providers.flatMap(p => p.models.map(m => ui.prefixed ? p.name + ':' + m.id : m.id));
}
function persist(model) {
  const bare = ui.prefixed && !ui.writePrefixed ? model.split(':').slice(1).join(':') : model;
  return fetch('/api/v2/conversations/' + convId, {method: 'PATCH', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({model_id: bare})});
}
window.modelForSend = () => conv.model_id;
document.getElementById('send').addEventListener('click', async () => {
  const id = convId, model = modelForSend();
  await fetch('/api/v2/conversations/' + id + '/turns', {method: 'POST',
    headers: {'Content-Type': 'application/json'}, body: JSON.stringify({model_id: model, text: 'hi'})});
  turns++;
});
"""

# The sidebar switches chats in place; the model shown is "corrected" to the first option when the chat's
# model is not listed, without saving (the fix is deferred to the next send); every change is persisted.
SWITCH_JS = r"""
async function openConv(id) {
  convId = id;  // the page is on the new chat at once; its data follows
  history.replaceState(null, '', '/chat/' + id);
  const data = await (await fetch('/api/v2/conversations/' + id)).json();
  if (convId !== id) return;
  conv = data.conversation;
  const listed = [...picker.options].some(o => o.value === conv.model_id);
  picker.value = listed ? conv.model_id : picker.options[0].value;
  if (!listed) conv.model_id = picker.value;  // deferred correction: the next send carries it
  window.opened = id;
}
picker.addEventListener('change', () => { conv.model_id = picker.value; persist(picker.value); });
// The open chat is polled for new turns (normally on a timer).
window.pollConv = async () => {
  const id = convId;
  await (await fetch('/api/v2/conversations/' + id + '?poll=1')).json();
  window.polled = (window.polled || 0) + 1;
};
for (const a of document.querySelectorAll('[data-conv]'))
  a.addEventListener('click', e => { e.preventDefault(); openConv(a.dataset.conv); });
modelForSend = () => picker.value;  // sends read the picker, whichever conversation is loaded
(async () => {
  fill(await catalog());
  if (ui.live) {  // the provider's own list, for models the static list lacks
    const live = await (await fetch('/api/v2/providers/acme/models')).json();
    for (const m of live.items) if (![...picker.options].some(o => o.value === m.id)) picker.add(new Option(m.id, m.id));
  }
  await openConv(convId);
  window.booted = true;
})();
"""

# The live list lands late; every change of the picker is persisted by the page's own handler.
PERSIST_JS = r"""
picker.onchange = () => { conv.model_id = picker.value; persist(picker.value); };
(async () => {
  conv = (await (await fetch('/api/v2/conversations/' + convId)).json()).conversation;
  const ids = await catalog();
  fill(ids);
  picker.value = ids.includes(conv.model_id) ? conv.model_id : ids[0];  // shown, not saved
  window.booted = true;
  const live = await (await fetch('/api/v2/providers/acme/models')).json();
  for (const m of live.items) if (!ids.includes(m.id)) picker.add(new Option(m.id, m.id));
  window.liveDone = true;
})();
"""

# Picks are saved when the user stops picking for 3 s (one write for a burst of changes); a "Refresh
# models" button rebuilds the picker from scratch, which leaves it on its first option.
BATCHED_JS = r"""
let timer = null;
picker.addEventListener('change', () => {
  conv.model_id = picker.value;
  clearTimeout(timer);
  timer = setTimeout(async () => {
    await persist(picker.value);
    if (ui.rereadAfterSave) conv = (await (await fetch('/api/v2/conversations/' + convId)).json()).conversation;
    window.saved = (window.saved || 0) + 1;
  }, ui.batchMs ?? 3000);
});
document.getElementById('refresh').addEventListener('click', async () => {
  fill(await catalog());
  window.refreshed = (window.refreshed || 0) + 1;
});
(async () => {
  if (ui.catalogFirst) fill(await catalog());  // the lists first, then the chat (the picker waits for it)
  conv = (await (await fetch('/api/v2/conversations/' + convId)).json()).conversation;
  if (!ui.catalogFirst) fill(await catalog());
  picker.value = ui.prefixed ? 'acme:' + conv.model_id : conv.model_id;
  window.booted = true;
})();
"""

# A chat whose model is in no list is "corrected" to the first option at once, and the correction is saved
# (the later lists are merged in when they land); sends carry the chat's model as the page holds it.
CORRECTING_JS = r"""
picker.addEventListener('change', () => { conv.model_id = picker.value; persist(picker.value); });
(async () => {
  conv = (await (await fetch('/api/v2/conversations/' + convId)).json()).conversation;
  fill(await catalog());
  const livePromise = fetch('/api/v2/providers/acme/models').then(r => r.json());
  if (![...picker.options].some(o => o.value === conv.model_id)) {
    conv.model_id = picker.value = picker.options[0].value;
    persist(conv.model_id);
  } else picker.value = conv.model_id;
  const live = await livePromise;
  for (const m of live.items) if (![...picker.options].some(o => o.value === m.id)) picker.add(new Option(m.id, m.id));
  window.booted = true;
})();
"""

# Everything by XMLHttpRequest through a small jQuery-style ``$.ajax`` of the page's own (callbacks, JSON
# parsed from ``responseText``, headers from ``getAllResponseHeaders``): the sidebar switches chats in place,
# every change of the picker is saved, sends read the picker, and the provider's live list may land late.
XHR_JS = r"""
const ui = JSON.parse(document.getElementById('ui').textContent);
const sel = document.getElementById('picker');
window.convId = location.pathname.split('/').pop();
window.conv = null;
window.turns = 0;
window.saves = [];
const $ = {ajax(o) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest(), events = [];
    for (const t of ['loadstart', 'readystatechange', 'load', 'loadend'])
      xhr.addEventListener(t, () => events.push(t === 'readystatechange' ? 'state ' + xhr.readyState : t));
    xhr.open(o.type || 'GET', o.url, true);
    if (o.contentType) xhr.setRequestHeader('Content-Type', o.contentType);
    xhr.onreadystatechange = () => {
      if (xhr.readyState !== 4) return;
      const headers = {};
      for (const line of xhr.getAllResponseHeaders().trim().split(/[\r\n]+/)) {
        const at = line.indexOf(':');
        if (at > 0) headers[line.slice(0, at).trim().toLowerCase()] = line.slice(at + 1).trim();
      }
      const ok = xhr.status >= 200 && xhr.status < 300;
      const data = ok && /json/.test(headers['content-type'] || '') ? JSON.parse(xhr.responseText) : xhr.responseText;
      if (ok) { o.success && o.success(data, 'success', xhr, headers, events); resolve(data); }
      else { o.error && o.error(xhr, 'error'); reject(xhr); }
    };
    xhr.send(o.data === undefined ? null : o.data);
    events.push('sent ' + xhr.readyState + '/' + xhr.status);  // nothing answered yet
  });
}};
const json = (type, url, body, success, error) => $.ajax({type, url, contentType: 'application/json',
  data: JSON.stringify(body), success, error}).catch(() => null);
function fill(ids) {
  sel.length = 0;
  for (const id of ids) sel.add(new Option(id, id));
}
function openConv(id) {
  convId = id;  // the page is on the new chat at once; its data follows
  history.replaceState(null, '', '/chat/' + id);
  return $.ajax({url: '/api/v2/conversations/' + id}).then(data => {
    if (convId !== id) return;
    conv = data.conversation;
    const listed = [...sel.options].some(o => o.value === conv.model_id);
    sel.value = listed ? conv.model_id : sel.options[0].value;  // shown, not saved
    window.opened = id;
  });
}
sel.onchange = () => {
  conv.model_id = sel.value;
  json('PATCH', '/api/v2/conversations/' + convId, {model_id: sel.value}, (data, status, xhr, headers, events) =>
    saves.push({status: xhr.status, data, answered: headers['x-hermes-answered'] || null, events}),
    xhr => saves.push({status: xhr.status, failed: true}));
};
document.getElementById('send').addEventListener('click', () => {
  json('POST', '/api/v2/conversations/' + convId + '/turns', {model_id: sel.value, text: 'hi'}, () => turns++);
});
for (const a of document.querySelectorAll('[data-conv]'))
  a.addEventListener('click', e => { e.preventDefault(); openConv(a.dataset.conv); });
(async () => {
  if (ui.deferredPoll) {  // a poll of the chat made ready now, sent only when "Refresh" is clicked
    window.poll = new XMLHttpRequest();
    poll.open('GET', '/api/v2/conversations/' + convId + '?poll=1');
    document.getElementById('refresh').addEventListener('click', () => poll.send());
  }
  const body = await $.ajax({url: '/api/v2/models'});
  fill(body.providers.flatMap(p => p.models.map(m => m.id)));
  await openConv(convId);
  window.booted = true;
  if (!ui.live) return;
  const live = await $.ajax({url: '/api/v2/providers/acme/models'});
  for (const m of live.items) if (![...sel.options].some(o => o.value === m.id)) sel.add(new Option(m.id, m.id));
  window.liveDone = true;
})();
"""

PAGES = {"switch": SWITCH_JS, "persist": PERSIST_JS, "batched": BATCHED_JS, "correcting": CORRECTING_JS,
         "xhr": XHR_JS}
OWN_PAGES = {"xhr"}  # pages that bring their own helpers instead of COMMON_JS (fetch)


@dataclass
class Convos:
    """The host's storage and what the test watches: stored models, model writes and turns as sent."""

    stored: dict[str, str] = field(default_factory=dict)
    catalog: dict[str, list[str]] = field(default_factory=lambda: {"acme": ["alpha-1", "beta-2"]})
    live: list[str] = field(default_factory=list)
    normalise: bool = False  # the update route stores "beta:x" as the bare "x"
    writes: list[tuple[str, str]] = field(default_factory=list)  # (conv, model) of PATCHes that reached the view
    turns: list[tuple[str, str]] = field(default_factory=list)  # (conv, model_id) as the page sent them
    slow_gate: threading.Event = field(default_factory=threading.Event)
    poll_gate: threading.Event = field(default_factory=threading.Event)
    live_gate: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.poll_gate.set()
        self.slow_gate.set()
        self.live_gate.set()


def make_host(convos: Convos, page: str, ui: dict[str, Any] | None = None, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(BASE_CONFIG, **config)
    guard = ModelGuard(app)

    def lookup(conv_id: str) -> str | None:
        if conv_id == "slow":
            convos.slow_gate.wait(GATE_TIMEOUT)  # a big conversation on a slow disk
        return convos.stored.get(conv_id)

    guard.session_model(lookup)

    @app.get("/chat/<conv_id>")
    def chat(conv_id: str) -> str:
        links = "".join(f'<a href="#" data-conv="{c}">{c}</a> ' for c in convos.stored)
        return ("<!doctype html><html><head><title>Convos</title>"
                f'<script type="application/json" id="ui">{json.dumps(ui or {})}</script></head><body>'
                f'<nav>{links}</nav><select id="picker"></select><button id="send">Send</button>'
                '<button id="refresh">Refresh models</button>'
                f"<script>{'' if page in OWN_PAGES else COMMON_JS}{PAGES[page]}</script></body></html>")

    @app.get("/api/v2/conversations/<conv_id>")
    def read(conv_id: str) -> Any:
        if request.args.get("poll"):
            convos.poll_gate.wait(GATE_TIMEOUT)
        return {"conversation": {"id": conv_id, "model_id": lookup(conv_id)}}

    @app.patch("/api/v2/conversations/<conv_id>")
    @guard.model_write(session="conv_id", model="model_id")
    def update(conv_id: str) -> Any:
        model = request.get_json()["model_id"]
        convos.writes.append((conv_id, model))
        convos.stored[conv_id] = model.split(":")[-1] if convos.normalise else model
        return {"conversation": {"id": conv_id, "model_id": model}}

    @app.before_request
    def record_turn() -> None:
        if request.method == "POST" and request.path.endswith("/turns"):
            convos.turns.append((request.path.split("/")[-2], request.get_json()["model_id"]))

    @app.post("/api/v2/conversations/<conv_id>/turns")
    @guard.model_write(session="conv_id", model="model_id")
    def turn(conv_id: str) -> Any:
        convos.stored[conv_id] = request.get_json()["model_id"]
        return {"ok": True}

    @app.get("/api/v2/models")
    def models() -> Any:
        return {"providers": [{"name": name, "models": [{"id": m} for m in ids]}
                              for name, ids in convos.catalog.items()]}

    @app.get("/api/v2/providers/<name>/models")
    def live(name: str) -> Any:
        convos.live_gate.wait(GATE_TIMEOUT)
        return {"items": [{"id": m} for m in convos.live]}

    return app
