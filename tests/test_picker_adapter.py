"""The picker adapter's plumbing: its config is checked, its script is served minified and public, and only
pages whose config declares an adapter load it."""

from __future__ import annotations

import gzip
from typing import Any

import pytest
from flask import Flask

from hermes_plugin import ModelGuard, script
from hermes_plugin.errors import ConfigError
from hermes_plugin.picker import check_picker_adapter

P = "/hermes-plugin"
ADAPTER = {"shown": "#trigger", "shown_prefix": "Model: ", "option": "[role=option]", "option_value": "data-id"}
PICKER_BUDGET = 3 * 1024  # bytes gzipped: a small add-on, loaded only by pages that declare an adapter


def make_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(HERMES_PLUGIN_CACHE="memory", **config)
    ModelGuard(app).session_model({"s1": "m1"}.get)
    app.add_url_rule("/", "index", lambda: "<html><head></head><body></body></html>")
    return app


def test_pages_load_the_adapter_only_when_one_is_declared() -> None:
    plain = make_app().test_client().get("/").get_data(as_text=True)
    assert "hermes-guard.js" in plain and "hermes-picker.js" not in plain and '"pickerAdapter":null' in plain
    page = make_app(HERMES_PLUGIN_PICKER_ADAPTER=ADAPTER).test_client().get("/").get_data(as_text=True)
    assert page.index("hermes-guard.js") < page.index("hermes-picker.js")  # after the core: it uses hermesGuard
    assert '"option_value":"data-id"' in page


def test_the_adapter_script_is_served_minified_public_and_small() -> None:
    client = make_app(HERMES_PLUGIN_PICKER_ADAPTER=ADAPTER).test_client()
    response = client.get(f"{P}/static/hermes-picker.js")
    assert response.status_code == 200 and response.mimetype == "text/javascript"
    assert response.get_data(as_text=True) == script.minified(script.PICKER_SCRIPT)
    assert len(gzip.compress(response.get_data(), 9)) <= PICKER_BUDGET
    again = client.get(f"{P}/static/hermes-picker.js", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304
    readable = make_app(DEBUG=True).test_client().get(f"{P}/static/hermes-picker.js").get_data(as_text=True)
    assert readable == script.source(script.PICKER_SCRIPT)
    with pytest.raises(ValueError):
        script.source("../secrets.js")


@pytest.mark.parametrize(("adapter", "message"), [
    ("#trigger", "must be a table"),
    ({"shown": "#t", "option": "li"}, "option_value is required"),
    ({**ADAPTER, "shown": ""}, "shown must be a non-empty string"),
    ({**ADAPTER, "open": 3}, "open must be a non-empty string"),
    ({**ADAPTER, "label": "x"}, "unknown keys"),
])
def test_bad_adapters_are_one_clear_config_error(adapter: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_app(HERMES_PLUGIN_PICKER_ADAPTER=adapter)
    assert check_picker_adapter(None) is None and check_picker_adapter(ADAPTER) == ADAPTER


def test_a_write_with_several_model_fields_tells_the_browser_its_first() -> None:
    app = make_app()
    guard = app.extensions["hermes_plugin"].guard

    @app.post("/turns/<room>")
    @guard.model_write(session="room", model=["turn.engines[]", "engine"])
    def turn(room: str) -> str:
        return "ok"

    page = app.test_client().get("/").get_data(as_text=True)
    assert '"session":"path:room","model":"body:turn.engines[]"' in page
