"""The real hermes-webui v0.50.227 behind ``--preset hermes-webui``: a session the page creates without a
pick gets the app's configured default (read from its own ``/api/settings``), a pick passes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from webui_host import DEFAULT, SAVED, WebUI

from hermes_plugin.proxy import create_app

pytestmark = pytest.mark.e2e


def test_webui_new_sessions_follow_its_configured_default(webui: WebUI, loopback_server: Callable[[Any], Any]):
    url = loopback_server(create_app(webui.url, preset="hermes-webui")).url

    def new(model: str, intent: str) -> tuple[str, str]:
        answer = requests.post(
            f"{url}/api/session/new",
            json={"model": model},
            timeout=30,
            headers={"Origin": url, "X-Hermes-Intent": intent},
        )
        answer.raise_for_status()
        session = answer.json()["session"]["session_id"]
        assert answer.headers["X-Hermes-Session"] == session
        return answer.headers["X-Hermes-Decision"], webui.stored(session)

    # The picker still shows the open chat's model (SAVED): an automatic create gets the app's default.
    assert new(SAVED, "auto") == ("default", DEFAULT)
    assert new(SAVED, "user") == ("pass", SAVED)
    alone = webui.new_session(SAVED)  # the app alone stores whatever the page sends
    assert webui.stored(alone) == SAVED
