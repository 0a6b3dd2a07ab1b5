"""A write's model in several fields (some lists): reading, judging, rewriting, and the guard's answers."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from flask import Flask, jsonify, request

from hermes_plugin import ModelGuard
from hermes_plugin.jsonpath import PathError, slots
from hermes_plugin.writefields import FieldError, WriteFields
from hermes_plugin.writeguard import decide_models

OPEN_WEBUI_FIELDS = ["user_message.models[]", "message_ids[].model_id", "model", "model_item.id"]


def send_body(*models: str) -> dict[str, Any]:
    """A chat send as Open WebUI's page builds it, naming ``models`` (the first is the primary)."""
    return {"model": models[0], "model_item": {"id": models[0], "name": models[0]}, "chat_id": "c1",
            "message_ids": [{"model_id": m, "message_id": f"m{i}", "modelIdx": i} for i, m in enumerate(models)],
            "user_message": {"id": "u1", "models": list(models)}, "messages": [{"role": "user", "content": "hi"}]}


def named(body: dict[str, Any]) -> tuple[Any, ...]:
    return (body["model"], body["model_item"]["id"], [e["model_id"] for e in body["message_ids"]],
            body["user_message"]["models"])


def test_slots_reach_every_value_a_path_names() -> None:
    body = send_body("a", "b")
    assert [key for _, key in slots(body, "message_ids[].model_id")] == ["model_id", "model_id"]
    assert [key for _, key in slots(body, "user_message.models[]")] == [0, 1]
    assert slots(body, "missing.models[]") == [] and slots(body, "model_item.id")[0][1] == "id"


def test_fields_read_in_order_and_validate() -> None:
    fields = WriteFields.of(OPEN_WEBUI_FIELDS)
    found = fields.read(send_body("a", "b"))
    assert [(v.path, v.many, v.models) for v in found] == [
        ("user_message.models[]", True, ("a", "b")), ("message_ids[].model_id", True, ("a", "b")),
        ("model", False, ("a",)), ("model_item.id", False, ("a",))]
    assert fields.read({"chat_id": "c1"}) == []  # no field present: the write names no model
    with pytest.raises(FieldError, match=r"chat.models: expected one model id, got a list \(name a list field"):
        WriteFields.of("chat.models").read({"chat": {"models": ["a"]}})
    with pytest.raises(FieldError, match=r"user_message.models\[\]"):
        fields.read({"user_message": {"models": ["<b>x</b>"]}})
    with pytest.raises(PathError):
        WriteFields.of(["model", "model"])


def test_a_secondary_field_that_differs_is_the_proposal() -> None:
    # Fields that disagree are judged by the one that would change the stored model: never a silent "same".
    fields = WriteFields.of(OPEN_WEBUI_FIELDS)
    body = send_body("a")
    body["message_ids"][0]["model_id"] = "b"
    assert WriteFields.proposal(fields.read(body), ("a",)) == ("b",)
    assert WriteFields.proposal(fields.read(send_body("a")), ("a",)) == ("a",)
    # A single field names the first entry of a multi-model list: the rest stays as stored.
    assert WriteFields.proposal(WriteFields.of("model").read({"model": "c"}), ("a", "b")) == ("c", "b")


def test_rewrite_makes_every_field_name_the_kept_models_or_touches_nothing() -> None:
    fields = WriteFields.of(OPEN_WEBUI_FIELDS)
    body = send_body("other")
    assert fields.rewrite(body, ("kept",))
    assert named(body) == ("kept", "kept", ["kept"], ["kept"])
    two = send_body("x", "y")
    assert fields.rewrite(two, ("a", "b")) and named(two) == ("a", "a", ["a", "b"], ["a", "b"])
    one = send_body("x")
    before = copy.deepcopy(one)
    assert not fields.rewrite(one, ("a", "b"))  # a one-entry list cannot say two models
    assert one == before


def availability_of(table: dict[str, str]) -> Any:
    return lambda model: table.get(model, "unknown")


def test_decide_models_per_entry() -> None:
    decision, kept = decide_models(("a", "b"), ("x", "b"), "auto", availability_of({"a": "present"}))
    assert (decision.outcome, decision.reason, kept) == ("keep", "model_present", ("a", "b"))
    decision, kept = decide_models(("a", "b"), ("x", "y"), "auto", availability_of({"a": "absent", "b": "unknown"}))
    assert (decision.outcome, kept) == ("keep", ("x", "b"))  # a is gone (fallback), b is kept
    decision, kept = decide_models(("a", "b"), ("x", "y"), "user", availability_of({}))
    assert (decision.outcome, decision.reason, kept) == ("pass", "user", None)
    decision, kept = decide_models(("a", "b"), ("b",), "auto", availability_of({"a": "unknown"}))
    assert (decision.outcome, decision.stored, decision.proposed, kept) == ("keep", "a, b", "b", ("a", "b"))
    decision, kept = decide_models(("a", "b"), ("b",), "auto", availability_of({"a": "absent"}))
    assert (decision.outcome, decision.reason, kept) == ("fallback", "model_absent", None)
    decision, kept = decide_models(("a",), ("b",), "auto", availability_of({}), on_keep="reject")
    assert (decision.outcome, kept) == ("reject", None)


# -- the guard on a Flask host whose writes name the model in several fields ------------------------------


def make_host(stored: dict[str, Any], serving: set[str] | None = None) -> tuple[Flask, list[dict[str, Any]]]:
    app = Flask(__name__)
    app.config.update(HERMES_PLUGIN_CACHE="memory")
    guard = ModelGuard(app)
    guard.session_model(stored.get)
    received: list[dict[str, Any]] = []
    if serving is not None:
        guard.servable(lambda models: None if set(models) <= serving else f"cannot serve {', '.join(models)}")

    @app.post("/api/chat/completions")
    @guard.model_write(session="chat_id", model=OPEN_WEBUI_FIELDS)
    def completions() -> Any:
        body = request.get_json()
        received.append(body)
        stored[body["chat_id"]] = list(body["user_message"]["models"])
        return jsonify({"answered_by": [e["model_id"] for e in body["message_ids"]]})

    return app, received


def post(app: Flask, body: dict[str, Any], intent: str = "auto") -> Any:
    return app.test_client().post("/api/chat/completions", json=body, headers={"X-Hermes-Intent": intent})


def test_keep_rewrites_every_field_so_the_header_and_the_body_agree() -> None:
    stored = {"c1": ["kept"]}
    app, received = make_host(stored)
    response = post(app, send_body("other"))
    assert response.status_code == 200 and response.headers["X-Hermes-Decision"] == "keep"
    assert named(received[0]) == ("kept", "kept", ["kept"], ["kept"])
    assert response.get_json() == {"answered_by": ["kept"]} and stored["c1"] == ["kept"]


def test_a_keep_the_fields_cannot_carry_is_refused_not_forwarded() -> None:
    stored = {"c1": ["a", "b"]}
    app, received = make_host(stored)
    response = post(app, send_body("b"))  # a one-model send for a two-model chat: no entry lines up
    assert response.status_code == 409 and response.headers["X-Hermes-Decision"] == "reject"
    assert response.get_json()["reason"] == "fields_differ"
    assert received == [] and stored["c1"] == ["a", "b"]


def test_multi_model_keep_per_entry_through_the_guard() -> None:
    stored = {"c1": ["a", "b"]}
    app, received = make_host(stored)
    response = post(app, send_body("x", "b"))
    assert response.headers["X-Hermes-Decision"] == "keep"
    assert named(received[0]) == ("a", "a", ["a", "b"], ["a", "b"]) and stored["c1"] == ["a", "b"]
    response = post(app, send_body("x", "y"), intent="user")
    assert response.headers["X-Hermes-Decision"] == "pass" and stored["c1"] == ["x", "y"]


def test_keep_only_what_the_host_can_serve() -> None:
    stored = {"c1": ["kept"]}
    app, received = make_host(stored, serving={"other"})
    response = post(app, send_body("other"))
    assert response.status_code == 409 and response.headers["X-Hermes-Decision"] == "reject"
    body = response.get_json()
    assert body["reason"] == "model_unservable" and body["detail"] == "kept the stored model 'kept': cannot serve kept"
    assert received == [] and stored["c1"] == ["kept"]


def test_list_and_bad_values_are_precise_400s_and_store_nothing() -> None:
    stored = {"c1": ["kept"]}
    app, received = make_host(stored)
    body = send_body("other")
    body["model"] = ["other"]
    response = post(app, body)
    assert response.status_code == 400 and "model: expected one model id, got a list" in response.get_json()["detail"]
    body = send_body("other")
    body["user_message"]["models"] = [7]
    assert post(app, body).status_code == 400
    assert received == [] and stored["c1"] == ["kept"]
