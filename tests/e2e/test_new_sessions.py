"""New threads follow the host's default model, and a pick made in a new-thread view is kept.

The host is written the way another team would: "threads" with an ``engine``, a ``New thread`` button that
creates one with whatever the picker shows, and no syncing of the picker from the create's answer.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, request
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from hermes_plugin import ModelGuard

pytestmark = pytest.mark.e2e

WAIT = 20
DEFAULT = "acme-small"
PAGE_JS = r"""
const sel = document.getElementById('engine');
let thread = null;
const shown = new URLSearchParams(location.search).get('t');
sel.addEventListener('change', () => {
  if (thread) fetch('/api/threads/' + thread.tid, {method: 'PUT', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({engine: sel.value})});
});
for (const row of document.querySelectorAll('#menu li')) row.addEventListener('click', () => {
  sel.value = row.dataset.id;  // a custom dropdown: sets the select, fires no event at all
});
document.getElementById('newThread').addEventListener('click', async () => {
  const r = await fetch('/api/threads', {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({engine: sel.value, title: 'untitled'})});
  thread = (await r.json()).thread;  // the picker is left as it was: this team never syncs it
  window.created = thread.tid;
});
document.getElementById('newThreadXhr').addEventListener('click', () => {  // the same create, by XHR
  const x = new XMLHttpRequest();
  x.open('POST', '/api/threads');
  x.setRequestHeader('Content-Type', 'application/json');
  x.onload = () => { thread = JSON.parse(x.responseText).thread; window.created = thread.tid; };
  x.send(JSON.stringify({engine: sel.value, title: 'untitled'}));
});
(async () => {
  if (shown) { thread = (await (await fetch('/api/threads/' + shown)).json()).thread; sel.value = thread.engine; }
  window.booted = true;
})();
"""


def threadly(threads: dict[str, str], **config: Any) -> Flask:
    app = Flask("threadly")
    app.config.update(
        HERMES_PLUGIN_CACHE="memory",
        HERMES_PLUGIN_MODEL_SELECT="#engine",
        HERMES_PLUGIN_PICKER="#menu",
        HERMES_PLUGIN_DEFAULT_MODEL=DEFAULT,
        HERMES_PLUGIN_SESSION_URLS=[{"url": r"/api/threads/(?P<session>[^/?]+)$", "model": "thread.engine"}],
        **config,
    )
    guard = ModelGuard(app)
    guard.session_model(threads.get)

    @app.get("/")
    def page() -> str:
        models = ("acme-large", "acme-mid", DEFAULT)
        options = "".join(f"<option value={m}>{m}</option>" for m in models)
        rows = "".join(f"<li data-id={m}>{m.title()}</li>" for m in models)
        return (
            f"<!doctype html><html><head><title>Threadly</title></head><body><select id=engine>{options}"
            f"</select><ul id=menu>{rows}</ul><button id=newThread>New thread</button>"
            "<button id=newThreadXhr>New thread (XHR)</button>"
            f"<script>{PAGE_JS}</script></body></html>"
        )

    @app.get("/api/threads/<tid>")
    def read(tid: str) -> Any:
        return {"thread": {"tid": tid, "engine": threads[tid]}}

    @app.put("/api/threads/<tid>")
    @guard.model_write(session="tid", model="engine")
    def update(tid: str) -> Any:
        threads[tid] = request.get_json()["engine"]
        return {"thread": {"tid": tid, "engine": threads[tid]}}

    @app.post("/api/threads")
    @guard.model_write(session="tid", model="engine")
    def create() -> Any:
        tid = uuid.uuid4().hex[:8]
        threads[tid] = request.get_json()["engine"]
        return {"thread": {"tid": tid, "engine": threads[tid]}}

    return app


def until(driver: Any, condition: Callable[[Any], Any], message: str) -> Any:
    return WebDriverWait(driver, WAIT).until(condition, message)


def shown(driver: Any) -> str:
    return str(driver.execute_script("return document.getElementById('engine').value"))


def new_thread(driver: Any, button: str = "newThread") -> str:
    driver.find_element(By.ID, button).click()
    return str(until(driver, lambda d: d.execute_script("return window.created"), "no thread was created"))


@pytest.mark.parametrize("policy", ["inherit", "default"])
def test_new_thread_from_an_open_one_gets_the_hosts_default(chromium, loopback_server, policy):
    threads = {"t1": "acme-large"}
    base = loopback_server(threadly(threads, HERMES_PLUGIN_NEW_SESSION_MODEL=policy)).url
    chromium.get(f"{base}/?t=t1")
    until(
        chromium,
        lambda d: d.execute_script("return window.booted && hermesGuard.state().session === 't1'"),
        "the thread never loaded",
    )
    assert shown(chromium) == "acme-large"
    tid = new_thread(chromium)
    if policy == "inherit":  # the bug: the new thread silently takes the open thread's model
        assert threads[tid] == "acme-large"
        return
    assert threads[tid] == DEFAULT
    log = json.loads(
        chromium.execute_script(
            "return fetch('/hermes-plugin/api/sessions/' + arguments[0] + '/model-log').then(r => r.text())", tid
        )
        or "{}"
    )
    assert [(e["proposed"], e["new"], e["reason"]) for e in log["entries"]] == [
        ("acme-large", DEFAULT, "new_session_default")
    ]
    assert threads["t1"] == "acme-large"


@pytest.mark.parametrize("tool", ["selenium-select", "custom-dropdown"])
def test_a_pick_in_a_new_thread_view_is_the_new_threads_model(chromium, loopback_server, tool):
    threads: dict[str, str] = {}
    base = loopback_server(threadly(threads)).url
    chromium.get(base + "/")
    until(chromium, lambda d: d.execute_script("return window.booted && !!window.hermesGuard"), "never booted")
    if tool == "selenium-select":  # untrusted input/change events
        Select(chromium.find_element(By.ID, "engine")).select_by_value("acme-mid")
    else:  # a real click on the dropdown's row; the page sets the select without any event
        chromium.find_element(By.CSS_SELECTOR, "#menu li[data-id=acme-mid]").click()
        assert shown(chromium) == "acme-mid"
    picked_at = chromium.execute_script("return performance.now()")
    # The user types a first message before creating the thread: longer than a pick explains a write.
    until(chromium, lambda d: d.execute_script("return performance.now()") - picked_at > 3500, "clock")
    tid = new_thread(chromium)
    assert threads[tid] == "acme-mid"
    assert shown(chromium) == "acme-mid"


def after_frames(driver: Any, n: int) -> None:
    """Returns once the page has painted n more frames (past the guard's re-check window)."""
    driver.execute_async_script(
        "const done = arguments[1]; let n = arguments[0];"
        "const step = () => (--n > 0 ? requestAnimationFrame(step) : done()); requestAnimationFrame(step);",
        n,
    )


@pytest.mark.parametrize("button", ["newThread", "newThreadXhr"])
def test_the_picker_shows_the_default_after_a_create_the_page_does_not_sync(chromium, loopback_server, button):
    threads = {"t1": "acme-large"}
    base = loopback_server(threadly(threads, HERMES_PLUGIN_NEW_SESSION_MODEL="default")).url
    chromium.get(f"{base}/?t=t1")
    until(
        chromium,
        lambda d: d.execute_script("return window.booted && hermesGuard.state().session === 't1'"),
        "the thread never loaded",
    )
    assert shown(chromium) == "acme-large"
    tid = new_thread(chromium, button)
    assert threads[tid] == DEFAULT  # the server stored the default ...
    # ... and the picker says so, although this page never syncs it from the create's answer.
    until(chromium, lambda d: shown(d) == DEFAULT, "the picker kept showing the previous thread's model")
    assert chromium.execute_script("return hermesGuard.state()")["session"] == tid
    assert chromium.execute_script("return hermesGuard.state()")["model"] == DEFAULT
    after_frames(chromium, 30)
    assert shown(chromium) == DEFAULT  # nothing put the previous thread's model back
    assert threads == {"t1": "acme-large", tid: DEFAULT}  # shown silently: no write into either thread
    # The user's next pick (later than the click on "New thread" explains a change) goes to the new thread.
    clicked_at = chromium.execute_script("return performance.now()")
    until(chromium, lambda d: d.execute_script("return performance.now()") - clicked_at > 1600, "clock")
    Select(chromium.find_element(By.ID, "engine")).select_by_value("acme-mid")
    until(chromium, lambda d: threads[tid] == "acme-mid", "the pick never reached the new thread")
    assert threads["t1"] == "acme-large"
