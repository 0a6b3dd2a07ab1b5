"""``HERMES_PLUGIN_ABSENT_MODEL``: an automatic write over a stored model that no catalogue lists (a preview
id, a custom provider's model), on a Flask host written the way another team would write it, both ways.

Under the default (``fallback``) the page's model replaces it, as before; under ``keep`` the stored model
stays, the write is audited as kept and the session API says the model is absent (the page shows it,
marked unavailable). User picks pass either way; the cost guard and the retirement map answer first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, jsonify, request
from test_history import CHEAP, PRICEY, RETIRED, auto_write, host, log_of, provider, session_info  # noqa: F401

from hermes_plugin import ModelGuard
from hermes_plugin.errors import ConfigError
from hermes_plugin.presets import preset
from hermes_plugin.proxy import proxy_config

P = "/hermes-plugin"
PREVIEW = "nova-3-preview"  # stored by the thread, listed by no engine list
CUSTOM = "custom:acme/nova-tuned"  # a custom provider's model, named by its prefix: listed by none either
# One flat live list of engines, each naming its vendor: the thread's engine is in none of them.
ENGINES = {"engines": [{"name": "nova-2", "vendor": "nv"}, {"name": "lumen-1", "vendor": "lm"}]}


def threads_host(tmp_path: Path, **config: Any) -> Flask:
    """"Threads" whose ``engine`` is set by ``PUT /threads/<tid>/settings {"engine": ...}``."""
    app = Flask("threads", instance_path=str(tmp_path / "instance"))
    app.config.update(HERMES_PLUGIN_CACHE="memory", HERMES_PLUGIN_LIVE_URLS=[
        {"url": r"^/engines$", "models": "engines[].name", "provider": "engines[].vendor"}], **config)
    threads: dict[str, dict[str, Any]] = {"t1": {"engine": PREVIEW, "topic": "draft"},
                                          "t2": {"engine": CUSTOM, "topic": "notes"}}
    app.threads = threads  # type: ignore[attr-defined]
    guard = ModelGuard()

    @guard.session_model
    def engine_of(tid: str) -> str | None:
        return threads[tid]["engine"] if tid in threads else None

    @app.get("/engines")
    def engines() -> Any:
        return jsonify(ENGINES)

    @app.put("/threads/<tid>/settings")
    @guard.model_write(session="tid", model="engine")
    def settings(tid: str) -> Any:
        threads[tid]["engine"] = request.get_json()["engine"]
        return jsonify({"tid": tid, **threads[tid]})

    guard.init_app(app)
    return app


@pytest.fixture
def served(loopback_server: Callable[[Any], Any], tmp_path: Path) -> Callable[..., tuple[Flask, str]]:
    def start(**config: Any) -> tuple[Flask, str]:
        app = threads_host(tmp_path / str(len(config)), **config)
        base = str(loopback_server(app).url)
        assert requests.get(f"{base}/engines", timeout=10).ok  # the page's own catalog read: both lists known
        return app, base

    return start


def put_engine(base: str, engine: str, intent: str = "auto", thread: str = "t1") -> requests.Response:
    return requests.put(f"{base}/threads/{thread}/settings", json={"engine": engine}, headers={"X-Hermes-Intent": intent},
                        timeout=30)


def model_log(base: str) -> list[dict[str, Any]]:
    return list(requests.get(f"{base}{P}/api/sessions/t1/model-log", timeout=10).json()["entries"])


def test_default_policy_lets_the_fallback_replace_a_model_in_no_catalogue(served):
    app, base = served()
    info = requests.get(f"{base}{P}/api/sessions/t1/model", timeout=10).json()
    assert (info["model"], info["availability"], info["absent_model"]) == (PREVIEW, "absent", "fallback")
    written = put_engine(base, "nova-2")
    assert (written.status_code, written.headers["X-Hermes-Decision"]) == (200, "fallback")
    assert app.threads["t1"]["engine"] == "nova-2"  # the preview id is gone from the thread
    [entry] = model_log(base)
    assert (entry["outcome"], entry["reason"], entry["old"], entry["new"]) == ("fallback", "model_absent",
                                                                               PREVIEW, "nova-2")


def test_keep_policy_keeps_a_model_in_no_catalogue_and_says_so(served):
    app, base = served(HERMES_PLUGIN_ABSENT_MODEL="keep")
    info = requests.get(f"{base}{P}/api/sessions/t1/model", timeout=10).json()
    # What the page needs to show it as itself, marked unavailable: stored, absent, and kept by the server.
    assert (info["model"], info["availability"], info["absent_model"]) == (PREVIEW, "absent", "keep")
    written = put_engine(base, "nova-2")
    assert written.status_code == 200
    assert (written.headers["X-Hermes-Decision"], written.headers["X-Hermes-Model-Kept"]) == ("keep",
                                                                                              "model_absent_kept")
    assert "X-Hermes-Notice" not in written.headers  # nothing changed: no "changed" notice with Undo
    assert written.json()["engine"] == PREVIEW and app.threads["t1"] == {"engine": PREVIEW, "topic": "draft"}
    [entry] = model_log(base)
    assert entry | {"time": 0} == {"time": 0, "old": PREVIEW, "new": PREVIEW, "proposed": "nova-2", "intent": "auto",
                                   "outcome": "keep", "reason": "model_absent_kept", "by": "server"}
    assert requests.get(f"{base}{P}/api/sessions/t1/model", timeout=10).json()["model"] == PREVIEW
    # The user's own pick still passes.
    picked = put_engine(base, "lumen-1", intent="user")
    assert (picked.headers["X-Hermes-Decision"], app.threads["t1"]["engine"]) == ("pass", "lumen-1")


def test_keep_policy_with_on_keep_reject_refuses_and_stores_nothing(served):
    app, base = served(HERMES_PLUGIN_ABSENT_MODEL="keep", HERMES_PLUGIN_ON_KEEP="reject")
    written = put_engine(base, "nova-2")
    assert written.status_code == 409 and written.json()["reason"] == "model_absent_kept"
    assert app.threads["t1"]["engine"] == PREVIEW


def test_a_per_provider_override_keeps_only_that_providers_models(served):
    app, base = served(HERMES_PLUGIN_ABSENT_MODEL_PROVIDERS={"custom": "keep"})
    answer = lambda tid: requests.get(f"{base}{P}/api/sessions/{tid}/model", timeout=10).json()  # noqa: E731
    assert (answer("t1")["absent_model"], answer("t2")["absent_model"]) == ("fallback", "keep")
    assert put_engine(base, "nova-2", thread="t2").headers["X-Hermes-Model-Kept"] == "model_absent_kept"
    assert put_engine(base, "nova-2", thread="t1").headers["X-Hermes-Decision"] == "fallback"
    assert (app.threads["t1"]["engine"], app.threads["t2"]["engine"]) == ("nova-2", CUSTOM)


@pytest.mark.parametrize("table", [{"custom": "drop"}, {"": "keep"}, "keep"])
def test_a_bad_override_fails_at_startup(tmp_path, table):
    with pytest.raises(ConfigError, match="HERMES_PLUGIN_ABSENT_MODEL_PROVIDERS"):
        threads_host(tmp_path, HERMES_PLUGIN_ABSENT_MODEL_PROVIDERS=table)
    with pytest.raises(ConfigError, match="absent_model_providers"):
        proxy_config({"absent_model_providers": table})


@pytest.mark.parametrize("value", ["maybe", "", None, 1])
def test_a_bad_policy_fails_at_startup(tmp_path, value):
    with pytest.raises(ConfigError, match="HERMES_PLUGIN_ABSENT_MODEL"):
        threads_host(tmp_path, HERMES_PLUGIN_ABSENT_MODEL=value)


def test_proxy_key_is_checked_and_the_hermes_webui_preset_keeps():
    assert proxy_config({}).absent_model == "fallback"
    assert proxy_config(preset("hermes-webui")).absent_model == "keep"
    assert proxy_config(preset("demo")).absent_model == "fallback"
    with pytest.raises(ConfigError, match="absent_model"):
        proxy_config({"absent_model": "drop"})


# -- composed with the cost guard and the retirement map (a provider that retired RETIRED, with prices) --------


def test_keep_policy_still_refuses_a_pricier_switch_and_keeps_a_cheaper_one(host):  # noqa: F811  (the fixture)
    app, base = host(HERMES_PLUGIN_ABSENT_MODEL="keep")
    pricier = auto_write(base, PRICEY)
    assert (pricier.status_code, pricier.json()["reason"]) == (409, "price_increase")  # the cost guard answers first
    assert pricier.headers["X-Hermes-Notice"] == "ask"
    cheaper = auto_write(base, CHEAP)  # under "fallback" this one is let through (test_history)
    assert (cheaper.status_code, cheaper.headers["X-Hermes-Model-Kept"]) == (200, "model_absent_kept")
    assert app.store.get("s1")["model"] == RETIRED  # type: ignore[attr-defined]
    assert [entry["reason"] for entry in log_of(base)] == ["price_increase", "model_absent_kept"]


def test_keep_policy_still_prompts_for_a_suggested_replacement(host):  # noqa: F811  (the fixture)
    app, base = host(HERMES_PLUGIN_ABSENT_MODEL="keep", HERMES_PLUGIN_MODEL_REPLACEMENTS={RETIRED: CHEAP})
    written = auto_write(base, CHEAP)
    assert written.headers["X-Hermes-Model-Kept"] == "replacement_suggested"
    assert written.headers["X-Hermes-Notice"] == "ask"  # the user answers the suggestion, not the policy
    assert session_info(base).json()["replacement"] == CHEAP
    assert app.store.get("s1")["model"] == RETIRED  # type: ignore[attr-defined]
