"""A chat host written the way another team would, with a custom listbox picker and multi-field sends.

"Parley" rooms hold a list of engines (a multi-model room answers from each). Its page is rendered
from state like a small framework would; the engine picker is a button plus a listbox of ``<li>`` rows
carrying ``data-engine`` (no ``<select>`` anywhere). Hovering the button refetches the engine list. A
send names the engines in four places: ``engine`` (the first), ``meta.engine_id``, ``slots[].engine``
and ``turn.engines`` (the list the server stores). When an engine of the room is not in the list it
loaded, the page shows the first engine of the list in its place and sends that.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, jsonify, request

from hermes_plugin import ModelGuard

ENGINES = ["parley-pro", "parley-lite", "parley-mini"]

PAGE = r"""<!doctype html><html><head><title>Parley</title></head><body>
<div id="room-head"><button id="engine-trigger" type="button"></button></div>
<div id="menu-slot"></div>
<textarea id="draft">hello</textarea><button id="send" type="button">Send</button>
<div id="error" role="alert"></div><ol id="replies"></ol>
<script>
const roomId = location.pathname.split('/').pop();
const state = {engines: [], catalog: [], open: false, ready: false, loads: 0};
const trigger = document.getElementById('engine-trigger');
function render() {
  trigger.textContent = 'Engine: ' + (state.engines.map(e => (state.catalog.find(c => c.slug === e) || {title: e}).title).join(' + ') || '-');
  const slot = document.getElementById('menu-slot');
  slot.innerHTML = '';
  if (!state.open) return;
  const ul = document.createElement('ul');
  ul.className = 'engine-menu';
  for (const c of state.catalog) {
    const li = document.createElement('li');
    li.dataset.engine = c.slug; li.textContent = c.title;
    li.addEventListener('click', () => { state.engines = [c.slug, ...state.engines.slice(1)]; state.open = false; render(); });
    ul.appendChild(li);
  }
  slot.appendChild(ul);
}
async function loadCatalog() {
  state.catalog = (await (await fetch('/v2/engines')).json()).engines;
  state.loads += 1;
  render();
}
trigger.addEventListener('mouseenter', loadCatalog);
trigger.addEventListener('click', () => { state.open = !state.open; render(); });
document.getElementById('send').addEventListener('click', async () => {
  const engines = state.engines;
  const r = await fetch('/v2/rooms/' + roomId + '/turns', {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({engine: engines[0], meta: {engine_id: engines[0]}, text: document.getElementById('draft').value,
                          slots: engines.map(e => ({engine: e})), turn: {engines: engines}})});
  const body = await r.json();
  if (!r.ok) { document.getElementById('error').textContent = body.detail || body.error; return; }
  for (const text of body.replies) {
    const li = document.createElement('li'); li.textContent = text; document.getElementById('replies').appendChild(li);
  }
});
(async () => {
  const room = (await (await fetch('/v2/rooms/' + roomId)).json()).room;
  await loadCatalog();
  const slugs = state.catalog.map(c => c.slug);
  // The page's own "fix": an engine it cannot list is shown (and later sent) as the first one it can.
  state.engines = room.engines.map(e => slugs.includes(e) ? e : slugs[0]);
  state.ready = true;
  render();
})();
</script></body></html>"""


@dataclass
class Rooms:
    """The host's storage, the engines it lists, the ones it can serve, and every send it answered."""

    engines: dict[str, list[str]] = field(default_factory=dict)
    listed: list[str] = field(default_factory=lambda: list(ENGINES))
    serving: list[str] = field(default_factory=lambda: list(ENGINES))
    sends: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_host(rooms: Rooms, fields: list[str] | None = None, adapter: bool = True, guard: bool = True,
              **config: Any) -> Flask:
    """The Parley host; ``fields`` are the send's model fields the guard is told about (all four by default)."""
    app = Flask(__name__)
    app.config.update(
        HERMES_PLUGIN_CACHE="memory",
        HERMES_PLUGIN_MODEL_SELECT="#no-select-on-this-page",
        HERMES_PLUGIN_PICKER="#engine-trigger, .engine-menu",
        HERMES_PLUGIN_STATIC_URLS=[{"url": r"^/v2/(?P<provider>engines)$", "models": "engines[].slug"}],
        HERMES_PLUGIN_SESSION_URLS=[{"url": r"^/v2/rooms/(?P<session>[^/]+)$", "model": "room.engines[]"}],
        HERMES_PLUGIN_PICKER_ADAPTER={"shown": "#engine-trigger", "shown_prefix": "Engine: ",
                                      "option": ".engine-menu [data-engine]", "option_value": "data-engine"}
        if adapter else None,
        HERMES_PLUGIN_INJECT=guard,
        **config,
    )
    model_guard = ModelGuard(app)
    model_guard.session_model(lambda room: rooms.engines.get(room))

    @model_guard.servable
    def serving(models: tuple[str, ...]) -> str | None:
        missing = [m for m in models if m not in rooms.serving]
        return f"Parley cannot run {', '.join(missing)} right now" if missing else None

    @app.get("/rooms/<room_id>")
    def page(room_id: str) -> Any:
        return PAGE

    @app.get("/v2/engines")
    def engines() -> Any:
        return jsonify({"engines": [{"slug": e, "title": e.replace("parley-", "Parley ").title()}
                                    for e in rooms.listed]})

    @app.get("/v2/rooms/<room_id>")
    def room(room_id: str) -> Any:
        return jsonify({"room": {"id": room_id, "engines": rooms.engines[room_id]}})

    def turn(room_id: str) -> Any:
        body = request.get_json()
        with rooms.lock:
            rooms.sends.append(body)
            rooms.engines[room_id] = list(body["turn"]["engines"])  # the server stores the turn's list
        return jsonify({"replies": [f"Reply from {slot['engine']}." for slot in body["slots"]]})

    view = model_guard.model_write(session="room_id", model=fields or [
        "turn.engines[]", "slots[].engine", "engine", "meta.engine_id"])(turn) if guard else turn
    app.add_url_rule("/v2/rooms/<room_id>/turns", "turn", view, methods=["POST"])
    return app
