"""``guard.guard_endpoint``: guarding a view of an app you do not own, inside the host's own decorators."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask, jsonify, request

from hermes_plugin import ModelGuard


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """The host's own auth decorator, written the usual way (functools.wraps)."""

    @functools.wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if request.headers.get("Authorization") != "Bearer alice":
            return jsonify({"error": "login required"}), 401
        return view(*args, **kwargs)

    return checked


def notebook(tmp_path: Path, guard: ModelGuard, order: str, **config: Any) -> Flask:
    """Someone else's app: a ``threads`` blueprint whose ``retitle`` view also changes the thread's model.

    ``order``: when the guard is set up relative to the blueprint ("before-blueprint", "after-blueprint").
    """
    app = Flask("notebook", instance_path=str(tmp_path / "instance"))
    app.config.update(HERMES_PLUGIN_CACHE="memory", HERMES_PLUGIN_UNMARKED_INTENT="auto", **config)
    threads = {"t1": {"assistant": "big-1", "title": "x"}}
    reads: list[str] = []
    app.threads, app.reads = threads, reads  # type: ignore[attr-defined]
    bp = Blueprint("threads", __name__)

    @bp.post("/threads/<tid>")
    @login_required
    def retitle(tid: str) -> Any:
        body = request.get_json()
        threads[tid].update(title=body.get("title", threads[tid]["title"]), assistant=body["prefs"]["assistant"])
        return threads[tid]

    @guard.session_model
    def assistant_of(tid: str) -> str | None:
        reads.append(tid)
        return threads[tid]["assistant"] if tid in threads else None

    if order == "before-blueprint":
        guard.init_app(app)
        guard.guard_endpoint("threads.retitle", session="tid", model="prefs.assistant")
        app.register_blueprint(bp)
    else:
        app.register_blueprint(bp)
        guard.init_app(app)
        guard.guard_endpoint("threads.retitle", session="tid", model="prefs.assistant")
    return app


def write(app: Flask, model: str, token: str | None = "alice", intent: str = "auto") -> Any:
    headers = {"X-Hermes-Intent": intent, **({"Authorization": f"Bearer {token}"} if token else {})}
    return app.test_client().post("/threads/t1", json={"prefs": {"assistant": model}}, headers=headers)


@pytest.mark.parametrize("order", ["before-blueprint", "after-blueprint"])
def test_guarded_endpoint_keeps_the_stored_model_on_an_automatic_write(tmp_path, order):
    app = notebook(tmp_path, ModelGuard(), order)
    kept = write(app, "small-2")
    assert (kept.status_code, kept.headers["X-Hermes-Decision"]) == (200, "keep")
    assert app.threads["t1"]["assistant"] == "big-1"  # type: ignore[attr-defined]
    picked = write(app, "small-2", intent="user")
    assert picked.headers["X-Hermes-Decision"] == "pass"
    assert app.threads["t1"]["assistant"] == "small-2"  # type: ignore[attr-defined]


@pytest.mark.parametrize("order", ["before-blueprint", "after-blueprint"])
def test_the_hosts_login_check_runs_before_the_guard(tmp_path, order):
    app = notebook(tmp_path, ModelGuard(), order, HERMES_PLUGIN_ON_KEEP="reject")
    refused = write(app, "small-2", token=None)
    # The host's 401, not the guard's 409 naming the stored model; the stored model was never even read.
    assert refused.status_code == 401 and "big-1" not in refused.get_data(as_text=True)
    assert app.reads == []  # type: ignore[attr-defined]
    assert write(app, "small-2").status_code == 409


def test_guard_endpoint_before_init_app(tmp_path):
    guard = ModelGuard()
    guard.guard_endpoint("threads.retitle", session="tid", model="prefs.assistant")
    app = notebook(tmp_path, guard, "after-blueprint")
    assert write(app, "small-2").headers["X-Hermes-Decision"] == "keep"


def test_the_pages_guard_script_learns_the_guarded_route(tmp_path):
    app = notebook(tmp_path, ModelGuard(), "before-blueprint")

    @app.get("/")
    def home() -> Any:
        return "<!doctype html><html><head></head><body></body></html>"

    page = app.test_client().get("/").get_data(as_text=True)
    config = json.loads(page.split('id="hermes-plugin-config">', 1)[1].split("</script>", 1)[0])
    assert config["writes"] == [
        {"method": "POST", "url": "^/threads/(?P<tid>[^/]+)$", "session": "path:tid", "model": "body:prefs.assistant"}
    ]


def test_a_decorator_the_guard_cannot_see_into_is_named_in_a_warning(tmp_path, caplog):
    app = Flask("opaque", instance_path=str(tmp_path / "instance"))
    app.config.update(HERMES_PLUGIN_CACHE="memory")
    stored = {"t1": "big-1"}

    class Audited:  # a class-based decorator: no closure the guard could reach into
        def __init__(self, view: Callable[..., Any]) -> None:
            self.view = view
            functools.update_wrapper(self, view)

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return self.view(*args, **kwargs)

    @app.put("/t/<tid>", endpoint="put_thread")
    @Audited
    def put_thread(tid: str) -> Any:
        stored[tid] = request.get_json()["model"]
        return {"ok": True}

    guard = ModelGuard(app)
    guard.session_model(stored.get)
    guard.guard_endpoint("put_thread", session="tid")
    answer = app.test_client().put("/t/t1", json={"model": "small-2"}, headers={"X-Hermes-Intent": "auto"})
    assert answer.headers["X-Hermes-Decision"] == "keep" and stored["t1"] == "big-1"
    assert "cannot reach the view inside its decorators" in caplog.text and "put_thread" in caplog.text


def test_guard_endpoint_needs_an_endpoint_name_and_single_value_paths():
    guard = ModelGuard()
    with pytest.raises(ValueError):
        guard.guard_endpoint("")
    with pytest.raises(ValueError):
        guard.guard_endpoint("x.y", session="ids[]")
    with pytest.raises(ValueError):
        guard.guard_endpoint("x.y", model=["model", "model"])
    guard.guard_endpoint("x.y", model=["models[].id", "model"])  # a model list is named with []


def test_an_endpoint_that_never_registers_is_named_in_a_warning(tmp_path, caplog):
    guard = ModelGuard()
    app = notebook(tmp_path, guard, "after-blueprint")
    guard.guard_endpoint("threads.retitel")  # a typo
    for _ in range(2):
        assert write(app, "small-2").headers["X-Hermes-Decision"] == "keep"  # the real endpoint still is
    warnings = [r.getMessage() for r in caplog.records if "no such endpoint" in r.getMessage()]
    assert len(warnings) == 1 and "threads.retitel" in warnings[0]
