"""Flask chat hosts written the way another team would: their own ids, URLs, JSON shapes and page code.

Each host is configured only as the README says (model select, catalog URLs, decorated write routes);
a page variant adds one habit seen in real apps: decorated option values, restoring the old value after
adding options, a custom dropdown that calls ``onchange()``, a React-style render from state.
The live model list waits at a gate the test opens, so every run is the same race.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, request

from hermes_plugin import ModelGuard

STORED = "acme-large"  # only in the live list
FALLBACK = "acme-small"  # the static list's first model
GATE_TIMEOUT = 30

BASE_CONFIG: dict[str, Any] = {
    "HERMES_PLUGIN_CACHE": "memory",
    "HERMES_PLUGIN_MODEL_SELECT": "#chatModel",
    "HERMES_PLUGIN_STATIC_URLS": [{"url": r"/v1/catalog$", "models": "providers[].models[]",
                                   "provider": "providers[].id"}],
    "HERMES_PLUGIN_LIVE_URLS": [{"url": r"/v1/providers/(?P<provider>[^/]+)/models$", "models": "data[].id"}],
}

# The classic page: a native select filled from the static list, a live list added later, a "correct
# the model if it is not an option" step that persists the first option, and a send button.
CLASSIC_JS = r"""
const chatId = location.pathname.split('/').pop();
const ui = JSON.parse(document.getElementById('ui').textContent);
const sel = document.getElementById('chatModel');
window.chat = null;
const valueOf = id => ui.decorate ? 'models/acme/' + id : id;
function addOption(value, label) {
  const o = document.createElement('option'); o.value = value; o.textContent = label; sel.appendChild(o);
}
function save(model) {
  return fetch('/v1/chats/' + chatId, {method: 'PUT', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({model: model, title: chat.title})});
}
sel.addEventListener('change', () => { chat.model = sel.value; save(sel.value); });
document.getElementById('send').addEventListener('click', () => {
  fetch('/v1/chats/' + chatId + '/messages', {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({text: 'hello', model: chat.model})}).then(() => { window.sent = true; });
});
async function boot() {
  chat = (await (await fetch('/v1/chats/' + chatId)).json()).chat;
  const catalog = await (await fetch('/v1/catalog')).json();
  for (const p of catalog.providers) for (const m of p.models) addOption(valueOf(m), m);
  if ([...sel.options].some(o => o.value === chat.model)) sel.value = chat.model;
  else {  // "fix" a stale model: show the first option, and persist it unless the page defers that
    sel.value = sel.options[0].value; chat.model = sel.value;
    if (!ui.deferSave) save(sel.value);
  }
  window.booted = true;
  const live = await (await fetch('/v1/providers/acme/models')).json();
  const before = sel.value;
  for (const m of live.data) if (![...sel.options].some(o => o.value === valueOf(m.id))) addOption(valueOf(m.id), m.id);
  if (ui.restore) sel.value = before;  // keep what the user saw
  window.liveDone = true;
}
boot();
"""

# A custom dropdown over a hidden select: rows set the select and call its onchange() directly.
DROPDOWN_JS = r"""
const chatId = location.pathname.split('/').pop();
const sel = document.getElementById('chatModel');
const list = document.getElementById('modelMenu');
window.chat = null;
sel.onchange = async () => {
  chat.model = sel.value;
  await fetch('/v1/chats/' + chatId, {method: 'PUT', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({model: sel.value})});
};
function rebuildMenu() {
  list.textContent = '';
  for (const o of sel.options) {
    const row = document.createElement('div');
    row.className = 'menu-row'; row.dataset.id = o.value; row.textContent = o.textContent;
    row.onclick = () => { sel.value = o.value; sel.onchange(); };
    list.appendChild(row);
  }
}
async function boot() {
  chat = (await (await fetch('/v1/chats/' + chatId)).json()).chat;
  for (const url of ['/v1/catalog', '/v1/providers/acme/models']) {
    const body = await (await fetch(url)).json();
    const ids = body.providers ? body.providers.flatMap(p => p.models) : body.data.map(m => m.id);
    for (const id of ids) if (![...sel.options].some(o => o.value === id)) sel.add(new Option(id, id));
  }
  sel.value = chat.model;
  rebuildMenu();
  window.liveDone = true;
}
boot();
"""

# React-style: the page's state is the truth and every change re-renders the whole select from it.
REACT_JS = r"""
const chatId = location.pathname.split('/').pop();
window.state = {model: null, options: [], title: ''};
function setState(patch) { Object.assign(state, patch); queueMicrotask(render); }
function render() {
  const sel = document.createElement('select');
  sel.id = 'chatModel';
  for (const id of state.options) sel.add(new Option(id, id));
  sel.value = state.model;
  sel.addEventListener('change', e => { setState({model: e.target.value}); save(e.target.value); });
  document.getElementById('chatModel').replaceWith(sel);
  window.renders = (window.renders || 0) + 1;
}
function save(model) {
  return fetch('/v1/chats/' + chatId, {method: 'PUT', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({model})});
}
document.getElementById('send').addEventListener('click', () => {
  fetch('/v1/chats/' + chatId + '/messages', {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({text: 'hello', model: state.model})}).then(() => { window.sent = true; });
});
async function boot() {
  const chat = (await (await fetch('/v1/chats/' + chatId)).json()).chat;
  const catalog = await (await fetch('/v1/catalog')).json();
  const options = catalog.providers.flatMap(p => p.models);
  const model = options.includes(chat.model) ? chat.model : options[0];
  setState({options, model, title: chat.title});
  if (model !== chat.model) save(model);  // "fix" a stale model
  window.booted = true;
  const live = await (await fetch('/v1/providers/acme/models')).json();
  setState({options: [...options, ...live.data.map(m => m.id).filter(id => !options.includes(id))]});
  window.liveDone = true;
}
boot();
"""

PAGES = {"classic": CLASSIC_JS, "dropdown": DROPDOWN_JS, "react": REACT_JS}


@dataclass
class Chats:
    """The host's storage and what the test watches: stored models, message bodies as the page sent them."""

    stored: dict[str, str] = field(default_factory=lambda: {"c1": STORED, "c2": FALLBACK})
    messages: list[dict[str, Any]] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)


def make_host(chats: Chats, page: str, ui: dict[str, Any] | None = None, **config: Any) -> Flask:
    """One foreign host app with ``ModelGuard`` set up the README's way; ``config`` adds or overrides keys."""
    app = Flask(__name__)
    app.config.update(BASE_CONFIG, **config)
    guard = ModelGuard(app)

    @guard.session_model
    def stored_model(chat_id: str) -> str | None:
        return chats.stored.get(chat_id)

    @app.get("/chat/<cid>")
    def chat_page(cid: str) -> str:
        import json

        return ("<!doctype html><html><head><title>Acme chat</title>"
                f'<script type="application/json" id="ui">{json.dumps(ui or {})}</script></head><body>'
                '<select id="chatModel" style="display:' + ("none" if page == "dropdown" else "inline") + '"></select>'
                '<div id="modelMenu"></div><button id="send">Send</button>'
                '<nav><a id="otherChat" href="#">Other chat</a></nav>'
                f"<script>{PAGES[page]}</script></body></html>")

    @app.get("/v1/chats/<cid>")
    def read_chat(cid: str) -> Any:
        return {"chat": {"id": cid, "title": "Chat " + cid, "model": chats.stored.get(cid)}}

    @app.put("/v1/chats/<cid>")
    @guard.model_write(session="cid", model="model")
    def update_chat(cid: str) -> Any:
        chats.stored[cid] = request.get_json()["model"]
        return {"ok": True}

    @app.before_request
    def record_message() -> None:
        if request.method == "POST" and request.path.endswith("/messages"):
            chats.messages.append(request.get_json())  # what the page sent, before any guard decision

    @app.post("/v1/chats/<cid>/messages")
    @guard.model_write(session="cid", model="model")
    def send_message(cid: str) -> Any:
        return {"ok": True, "model": request.get_json()["model"]}

    @app.get("/v1/catalog")
    def static_catalog() -> Any:
        return {"providers": [{"id": "acme", "models": [FALLBACK]}]}

    @app.get("/v1/providers/<provider>/models")
    def live_catalog(provider: str) -> Any:
        chats.gate.wait(GATE_TIMEOUT)
        return {"data": [{"id": FALLBACK}, {"id": STORED}]}

    return app
