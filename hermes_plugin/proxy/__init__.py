"""Reverse-proxy mode: the same guard in front of a chat app that is not a Flask app (docs/proxy.md).

The proxy is a Flask app that hosts ``ModelGuard`` like any other host. In front of it, a plain WSGI
layer checks the request-target and ``Host`` and relays every request the guard takes no part in
straight to the upstream (no Flask request, bodies streamed both ways, never parsed). The rest reaches
Flask: the plugin's routes, WebSocket upgrades, configured write routes (through ``extension.guard_write``)
and reads whose answers the guard's ``after_request`` reads (HTML pages to inject into, catalog JSON to
learn from, session JSON to learn stored models from; buffered, capped).

Modules, each importing only those listed before it: ``urls`` (upstream origin, client path, hop-by-hop
headers), ``config`` (the ``[proxy]`` table), ``credentials`` (the caller's, forwarded), ``sessions``
(stored-model reads as the caller), ``servable`` (a kept model checked against the upstream's own list, as
the caller), ``access`` (the upstream authorises the plugin's routes), ``upstream`` (kept-alive connections
to the upstream), ``relay`` (HTTP forwarding), ``passthrough`` (the WSGI entry: checks, and the relay
without Flask), ``websocket`` (the WebSocket bridge), ``serving`` (the CLI's server), ``app`` (the factory).
"""

from .app import ALL_METHODS, create_app
from .config import PROXY_KEYS, ProxyConfig, SessionRead, WriteRoute, load_config, proxy_config
from .relay import CHUNK, MAX_BUFFER, Proxy, make_session
from .sessions import SessionAnswer, SessionModels
from .urls import HOP_BY_HOP, hop_by_hop
from .websocket import client_with_host

__all__ = ["ALL_METHODS", "CHUNK", "HOP_BY_HOP", "MAX_BUFFER", "PROXY_KEYS", "Proxy", "ProxyConfig", "SessionAnswer", "SessionModels",
           "SessionRead", "WriteRoute", "client_with_host", "create_app", "hop_by_hop", "load_config",
           "make_session", "proxy_config"]
