"""What the model history and undo cost guarded writes, in one run: three kinds of write side by side.

- restate: a guarded write that restates the stored model (no history entry: the baseline);
- pick:    a guarded write that changes the model (version, a model-log entry with who/why, the event);
- nolog:   the same pick on a second, identical app whose model log is switched off (the entry is
           dropped before it is stored): pick/nolog is what the history itself costs a write;
- undo:    ``POST .../model/undo`` (reads the log, writes through the host's setter, logs the undo).

One host app with the guard's default SQLite state, on a real loopback server; each client thread
owns one session (writes of one session are serialised by design, so sharing one would measure the
lock). Rounds are interleaved (restate pick undo, then reversed) so machine drift hits all alike.

    python bench/history_bench.py [--rounds 6] [--requests 300] [--threads 4]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from flask import Flask, request

from hermes_plugin import ModelGuard
from hermes_plugin.testing.servers import LoopbackServer

P = "/hermes-plugin"
MODELS = ("prov/a", "prov/b")


def make_app(tmp: Path, sessions: int, log: bool = True) -> Flask:
    app = Flask(f"bench_history_{log}", instance_path=str(tmp / f"instance-{log}"))
    app.config.update(HERMES_PLUGIN_CACHE="memory", HERMES_PLUGIN_STATE="sqlite")
    store = {f"s{i}": MODELS[0] for i in range(sessions)}
    lock = threading.Lock()
    guard = ModelGuard(app)
    guard.session_model(store.get)

    @guard.session_model_setter
    def set_model(session_id: str, model: str) -> None:
        with lock:
            store[session_id] = model

    @app.post("/api/session/update")
    @guard.model_write(session="session_id", model="model")
    def update() -> dict[str, Any]:
        body = request.get_json()
        with lock:
            store[body["session_id"]] = body["model"]
        return {"ok": True}

    if not log:  # the comparison app: everything a change records except its model-log entry
        state = guard.state(app).store
        record = state.record
        state.record = lambda session, version=None, entry=None, message=None: record(session, version, None, message)
    return app


def drive(count: int, threads: int, one: Callable[[requests.Session, str, int], None]) -> float:
    """Seconds for ``count`` requests over ``threads`` client threads, each on its own session."""
    local = threading.local()
    ids = iter(range(threads))
    ids_lock = threading.Lock()

    def run(index: int) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            with ids_lock:
                local.sid = f"s{next(ids)}"
        one(local.session, local.sid, index)

    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        list(pool.map(run, range(count)))
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = LoopbackServer(make_app(Path(tmp), args.threads)).start()
        nolog_server = LoopbackServer(make_app(Path(tmp), args.threads, log=False)).start()
        base = server.url
        current: dict[str, str] = {}
        nolog_current: dict[str, str] = {}

        def write(http: requests.Session, sid: str, model: str, url: str = base,
                  models: dict[str, str] = current) -> None:
            response = http.post(url + "/api/session/update", json={"session_id": sid, "model": model},
                                 headers={"X-Hermes-Intent": "user"}, timeout=30)
            response.raise_for_status()
            models[sid] = model

        def restate(http: requests.Session, sid: str, _: int) -> None:
            write(http, sid, current.get(sid, MODELS[0]))

        def pick(http: requests.Session, sid: str, _: int) -> None:
            write(http, sid, MODELS[1] if current.get(sid, MODELS[0]) == MODELS[0] else MODELS[0])

        def nolog(http: requests.Session, sid: str, _: int) -> None:
            model = MODELS[1] if nolog_current.get(sid, MODELS[0]) == MODELS[0] else MODELS[0]
            write(http, sid, model, nolog_server.url, nolog_current)

        def undo(http: requests.Session, sid: str, _: int) -> None:
            response = http.post(f"{base}{P}/api/sessions/{sid}/model/undo", headers={"If-Match": "*"}, timeout=30)
            response.raise_for_status()
            current[sid] = response.json()["model"]

        kinds = {"restate": restate, "pick": pick, "nolog": nolog, "undo": undo}
        try:
            for kind in kinds.values():  # warm-up (and a first change, so undo has something to revert)
                drive(args.threads * 4, args.threads, kind)
            totals = dict.fromkeys(kinds, 0.0)
            for index in range(args.rounds):
                order = list(kinds) if index % 2 == 0 else list(reversed(kinds))
                for name in order:
                    totals[name] += drive(args.requests, args.threads, kinds[name])
            rates = {name: args.rounds * args.requests / seconds for name, seconds in totals.items()}
            print(f"{args.rounds} rounds x {args.requests} requests, {args.threads} client threads (one session each), "
                  "SQLite state")
            print("   ".join(f"{name} {rate:7.0f} writes/s" for name, rate in rates.items()))
            print(f"pick/nolog {rates['pick'] / rates['nolog']:.3f}   pick/restate {rates['pick'] / rates['restate']:.3f}"
                  f"   undo/pick {rates['undo'] / rates['pick']:.3f}")
        finally:
            server.stop()
            nolog_server.stop()


if __name__ == "__main__":
    main()
