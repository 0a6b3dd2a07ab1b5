"""Keep only what the upstream can serve: its own model list, asked as the caller before a kept model goes out.

Some hosts build the registry they check sends against only when their model list is read (Open WebUI
rebuilds it on ``GET /api/models``): asking the list both refreshes it and says whether the kept model is in it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import requests

from .. import jsonpath
from .config import UpstreamModelsRead
from .credentials import caller_headers

if TYPE_CHECKING:
    from .relay import Proxy

log = logging.getLogger("hermes_plugin.proxy")


class UpstreamModels:
    """A ``servable`` check for the guard: None when the upstream lists every kept model, else why not."""

    def __init__(self, proxy: Proxy, read: UpstreamModelsRead) -> None:
        self.proxy, self.read = proxy, read

    def __call__(self, models: tuple[str, ...]) -> str | None:
        headers = {"Accept": "application/json", **caller_headers()}
        try:
            response = self.proxy.http.get(self.proxy.upstream + self.read.url, headers=headers,
                                           allow_redirects=False, timeout=self.proxy.timeouts)
            listed = {m for m in jsonpath.extract(response.json(), self.read.models) if isinstance(m, str)} \
                if response.ok else None
        except (requests.RequestException, ValueError) as exc:
            log.warning("hermes-plugin proxy: the upstream's model list did not answer: %s", type(exc).__name__)
            return "the app's model list did not answer, so the saved model could not be confirmed: try again"
        if listed is None:
            return f"the app's model list answered HTTP {response.status_code}: try again"
        missing = [model for model in models if model not in listed]
        if not missing:
            return None
        return (f"the app cannot serve the saved model {', '.join(missing)} right now, so nothing was sent: "
                "try again in a moment or pick another model")
