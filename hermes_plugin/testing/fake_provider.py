"""A fake model provider on loopback: OpenAI, Ollama or Anthropic list APIs with latency and fault knobs.

The OpenAI kind also answers ``POST /v1/chat/completions`` (plain or streamed) with a reply that names the
model it was asked for, so a test of a whole chat app can tell which model answered."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any

from werkzeug.wrappers import Request, Response

from ..models import Model
from .servers import LoopbackServer

KINDS = ("openai", "ollama", "anthropic")
FAULTS = (None, "500", "429", "timeout", "refused", "malformed", "schema", "huge", "deep", "drip")
HUGE_BYTES = 10 * 2**20
DEEP = 100_000  # nesting levels of the "deep" fault: far past the interpreter's recursion limit
RETRY_AFTER = "7"
ANTHROPIC_DEFAULT_LIMIT = 20
DRIP_INTERVAL = 0.05  # pacing of the never-ending body; the wait ends early when the server stops


def _normalise(items: Iterable[Any]) -> list[tuple[Any, str | None]]:
    # Ids are served exactly as given (even invalid ones): the code under test must do the validating.
    out: list[tuple[Any, str | None]] = []
    for item in items:
        if isinstance(item, Model):
            out.append((item.id, item.label))
        elif isinstance(item, dict):
            out.append((item.get("id"), item.get("label")))
        else:
            out.append((item, None))
    return out


class FakeProvider:
    """Serve a model list like a real provider; every knob may be changed from any thread at any time.

    ``fault``: None | "500" | "429" | "timeout" (hang until ``release()`` or ``stop()``) | "refused" (stop
    listening; back to None listens again on the same port) | "malformed" | "schema" | "huge" | "deep"
    (JSON nested 100,000 levels) | "drip".
    """

    def __init__(self, kind: str = "openai", models: Iterable[Any] = (), latency: float = 0.0,
                 fault: str | None = None, api_key: str | None = None, page_size: int | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.kind = kind
        self.models = list(models)
        self.latency = latency
        self.api_key = api_key
        self.page_size = page_size
        self._fault: str | None = None
        self._count = 0
        self._completions: list[Any] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._release = threading.Event()
        self._started = False
        self._server = LoopbackServer(self._wsgi)
        self.fault = fault

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> FakeProvider:
        with self._lock:
            self._started = True
            listen = self._fault != "refused"
        if listen:
            self._server.start()
        elif not self._server.bound:
            # "refused" from the start still needs a port that refuses: bind once, then close.
            self._server.start()
            self._server.stop()
        return self

    def stop(self) -> None:
        with self._lock:
            self._started = False
        self.release()
        self._server.stop()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def base_url(self) -> str:
        """What to put in config for this kind (openai: ``url + "/v1"``)."""
        return self.url + "/v1" if self.kind == "openai" else self.url

    # -- knobs -----------------------------------------------------------------------------------

    @property
    def fault(self) -> str | None:
        return self._fault

    @fault.setter
    def fault(self, value: str | None) -> None:
        if value not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, got {value!r}")
        with self._lock:
            previous, self._fault = self._fault, value
            started = self._started
        if started and value == "refused" and previous != "refused":
            self._server.stop()
        elif started and previous == "refused" and value != "refused":
            self._server.start()

    @property
    def requests(self) -> int:
        """Model-list requests received (counted on arrival, before latency and faults)."""
        with self._lock:
            return self._count

    def wait_requests(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` model-list requests have arrived (an explicit wait for tests)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self._count >= count, timeout)

    @property
    def completions(self) -> list[Any]:
        """The ``model`` of every authorised chat completion asked for, in arrival order (unknown ones too)."""
        with self._lock:
            return list(self._completions)

    def reset(self) -> None:
        """Zero the request counter and forget the chat completions."""
        with self._lock:
            self._count = 0
            self._completions.clear()

    def release(self) -> None:
        """Let every request hanging on the "timeout"/"drip" faults or on latency finish now."""
        with self._lock:
            event, self._release = self._release, threading.Event()
        event.set()

    def configure(self, latency: Any = None, fault: Any = "", models: Any = None) -> None:
        """Change knobs at once (what ``POST /_fake/config`` does); bad values raise ValueError, changing nothing."""
        if latency is not None and (isinstance(latency, bool) or not isinstance(latency, (int, float)) or latency < 0):
            raise ValueError("latency must be a number of seconds >= 0")
        if fault != "" and fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}")
        if models is not None and not isinstance(models, list):
            raise ValueError("models must be a list")
        if latency is not None:
            self.latency = float(latency)
        if models is not None:
            self.models = list(models)
        if fault != "":
            self.fault = fault

    # -- the WSGI app ----------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        return self._dispatch(request)(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        if request.path == "/_fake/config":
            return self._control(request)
        if self.kind == "openai" and request.path == "/v1/chat/completions":
            return self._chat_completion(request)
        list_path = "/api/tags" if self.kind == "ollama" else "/v1/models"
        if request.path != list_path:
            return _json({"error": "not found"}, 404)
        if request.method != "GET":
            return _json({"error": "method not allowed"}, 405)
        with self._lock:
            self._count += 1
            release = self._release
            self._arrived.notify_all()
        if self.latency > 0:
            release.wait(self.latency)  # release()/stop() cut the latency short
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        fault = self._fault
        if fault == "timeout":
            release.wait()
            return _json({"error": "released"}, 504)
        if fault == "500":
            return _json({"error": {"message": "internal error", "type": "server_error"}}, 500)
        if fault == "429":
            response = _json({"error": {"message": "rate limited", "type": "rate_limit"}}, 429)
            response.headers["Retry-After"] = RETRY_AFTER
            return response
        if fault == "malformed":
            return Response(b'{"data": [{"id": "broken"', 200, content_type="application/json")
        if fault == "schema":
            return _json({"object": "list", "items": "not-a-model-list"})
        if fault == "huge":
            return Response(self._huge_body(), 200, content_type="application/json")
        if fault == "deep":
            return Response(b"[" * DEEP + b"]" * DEEP, 200, content_type="application/json")
        if fault == "drip":
            # No Content-Length (chunked): only a total deadline, not a size check, can stop this one.
            return Response(self._drip(release), 200, content_type="application/json")
        return self._listing(request)

    def _check_auth(self, request: Request) -> Response | None:
        if self.kind == "anthropic":
            key = request.headers.get("x-api-key")
            if not key or (self.api_key is not None and key != self.api_key):
                return _json({"type": "error", "error": {"type": "authentication_error",
                                                         "message": "invalid x-api-key"}}, 401)
            if not request.headers.get("anthropic-version"):
                return _json({"type": "error", "error": {"type": "invalid_request_error",
                                                         "message": "anthropic-version header is required"}}, 400)
            return None
        if self.api_key is None:
            return None
        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {self.api_key}" and request.headers.get("x-api-key") != self.api_key:
            return _json({"error": {"message": "invalid api key", "type": "invalid_request_error"}}, 401)
        return None

    def _listing(self, request: Request) -> Response:
        models = _normalise(self.models)
        if self.kind == "openai":
            data = []
            for (model_id, label), given in zip(models, self.models, strict=True):
                item: dict[str, Any] = {"id": model_id, "object": "model", "owned_by": "fake"}
                if label:
                    item["name"] = label
                if isinstance(given, dict) and "pricing" in given:  # served as given: OpenRouter's shape or any
                    item["pricing"] = given["pricing"]
                data.append(item)
            return _json({"object": "list", "data": data})
        if self.kind == "ollama":
            return _json({"models": [{"name": model_id, "model": model_id} for model_id, _ in models]})
        return self._anthropic_page(request, models)

    def _chat_completion(self, request: Request) -> Response:
        # Only the model list has latency and faults; a reply is instant so a test waits on the list alone.
        if request.method != "POST":
            return _json({"error": "method not allowed"}, 405)
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _json({"error": {"message": "expected a JSON object", "type": "invalid_request_error"}}, 400)
        model = body.get("model")
        with self._lock:
            self._completions.append(model)
        if not isinstance(model, str) or model not in [model_id for model_id, _ in _normalise(self.models)]:
            return _json({"error": {"message": f"The model `{model}` does not exist", "type": "invalid_request_error",
                                    "code": "model_not_found"}}, 404)
        reply = f"Reply from {model}."
        if body.get("stream"):
            return Response(_reply_stream(model, reply), 200, content_type="text/event-stream")
        return _json({"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
                      "choices": [{"index": 0, "finish_reason": "stop",
                                   "message": {"role": "assistant", "content": reply}}],
                      "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    def _anthropic_page(self, request: Request, models: list[tuple[Any, str | None]]) -> Response:
        try:
            limit = int(request.args.get("limit", ANTHROPIC_DEFAULT_LIMIT))
        except ValueError:
            return _json({"type": "error", "error": {"type": "invalid_request_error", "message": "bad limit"}}, 400)
        if self.page_size:
            limit = min(limit, self.page_size)
        start = 0
        after = request.args.get("after_id")
        if after is not None:
            ids = [model_id for model_id, _ in models]
            if after not in ids:
                return _json({"type": "error", "error": {"type": "invalid_request_error",
                                                         "message": "unknown after_id"}}, 400)
            start = ids.index(after) + 1
        page = models[start:start + max(limit, 1)]
        data = [{"id": model_id, "display_name": label or model_id, "type": "model",
                 "created_at": "2025-01-01T00:00:00Z"} for model_id, label in page]
        return _json({"data": data, "has_more": start + len(page) < len(models),
                      "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None})

    def _huge_body(self) -> bytes:
        # Valid JSON of the right shape: only a size cap can stop a client from swallowing it.
        head = b'{"object": "list", "data": [{"id": "huge-model", "object": "model"}], "padding": "'
        tail = b'"}'
        return head + b"x" * (HUGE_BYTES - len(head) - len(tail)) + tail

    def _drip(self, release: threading.Event) -> Iterator[bytes]:
        yield b"{"
        while not release.wait(DRIP_INTERVAL):
            yield b" "

    def _control(self, request: Request) -> Response:
        if request.method == "GET":
            return _json(self._state())
        if request.method != "POST":
            return _json({"error": "method not allowed"}, 405)
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or set(body) - {"latency", "fault", "models"}:
            return _json({"error": "expected a JSON object with latency, fault, models"}, 400)
        try:
            self.configure(body.get("latency"), body.get("fault", ""), body.get("models"))
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        return _json(self._state())

    def _state(self) -> dict[str, Any]:
        models = [{"id": model_id, "label": label} for model_id, label in _normalise(self.models)]
        return {"kind": self.kind, "latency": self.latency, "fault": self._fault, "models": models,
                "requests": self.requests, "completions": self.completions}


def _reply_stream(model: str, reply: str) -> Iterator[bytes]:
    """Server-sent events as OpenAI streams them: a role chunk, the content, a stop chunk, ``[DONE]``."""
    for delta, finish in (({"role": "assistant"}, None), ({"content": reply}, None), ({}, "stop")):
        chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        yield f"data: {json.dumps(chunk)}\n\n".encode()
    yield b"data: [DONE]\n\n"


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status, content_type="application/json")
