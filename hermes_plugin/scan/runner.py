"""Run the trials: the app behind the scanner proxy, opened in headless Chromium without and with delays."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from ..proxy.urls import upstream_base
from ..testing.browser import BrowserMissing, launch_chromium, reset_chromium
from ..testing.servers import LoopbackServer
from .traffic import BLANK_PATH, Traffic, create_scan_app
from .writes import Change, changes, find_object

ALL = "all catalogs"
QUIET = 1.5  # seconds without a request in flight after which a page counts as done loading
SETTLE_LIMIT = 20.0  # a page that keeps polling is cut off this many seconds (plus three delays) after load


class CannotScan(RuntimeError):
    """The scan could not run: no browser, the app does not answer, or no catalog to delay was seen."""


@dataclass
class Finding:
    """A write the page made on load, without user input, that changed a stored value."""

    method: str
    url: str
    field: str
    before: Any
    after: Any
    stored: Any  # what the app holds after the trial
    read_url: str
    body: Any
    delay_ms: int
    plan: str  # which catalogs were delayed: ALL, or one catalog path
    trial: int
    at_ms: int  # when the page sent the write, from the start of the trial

    def key(self) -> tuple[str, str, str, str, str]:
        return (self.method, self.url.split("?", 1)[0], self.field, json.dumps(self.before), json.dumps(self.after))


@dataclass
class Run:
    """Trials at one catalog delay, applied to every catalog (ALL) or to one catalog path alone."""

    delay_ms: int
    plan: str = ALL
    trials: int = 0
    writes: int = 0  # writes the page made on load, changed anything or not
    trials_with_finding: int = 0


@dataclass
class Report:
    upstream: str
    start_url: str
    runs: list[Run] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    catalogs: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.findings)

    def grouped(self) -> list[dict[str, Any]]:
        """One entry per distinct write (same route, field, before and after), with where it appeared."""
        groups: dict[tuple[str, ...], dict[str, Any]] = {}
        for f in self.findings:
            entry = groups.setdefault(
                f.key(),
                {
                    "method": f.method,
                    "url": f.url,
                    "field": f.field,
                    "before": f.before,
                    "after": f.after,
                    "stored": f.stored,
                    "read_url": f.read_url,
                    "body": f.body,
                    "first_delay_ms": f.delay_ms,
                    "seen": {},
                },
            )
            entry["first_delay_ms"] = min(entry["first_delay_ms"], f.delay_ms)
            where = f"{f.delay_ms} ms, {f.plan}" if f.delay_ms else "no delay"
            entry["seen"][where] = entry["seen"].get(where, 0) + 1
        return list(groups.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "upstream": self.upstream,
            "start_url": self.start_url,
            "verdict": "found" if self.found else "none",
            "runs": [vars(r) for r in self.runs],
            "catalogs": self.catalogs,
            "findings": self.grouped(),
            "trials": [vars(f) for f in self.findings],
            "notes": self.notes,
        }


@dataclass
class Options:
    upstream: str
    start_url: str = "/"
    trials: int = 3
    delays_ms: Sequence[int] = (500, 2000)
    catalog_paths: Sequence[str] = ()
    each_catalog: bool = True  # also delay each catalog path alone (pages that fetch catalogs in parallel)
    local_storage: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)  # a signed-in user's, for the page and the re-reads


def check_upstream(upstream: str, start_url: str, cookies: dict[str, str]) -> None:
    try:
        requests.get(upstream + start_url, cookies=cookies, timeout=10, allow_redirects=False).close()
    except requests.RequestException as exc:
        raise CannotScan(f"the app at {upstream} does not answer ({type(exc).__name__})") from None


def scan(options: Options, progress: Callable[[str], None] = lambda line: None) -> Report:
    """Open ``start_url`` ``trials`` times without delay, then ``trials`` times per delay; CannotScan if it cannot."""
    upstream = upstream_base(options.upstream)
    if not options.start_url.startswith("/") or options.start_url.startswith("//"):
        raise CannotScan("--start-url must be a path on the app, starting with a single '/'")
    check_upstream(upstream, options.start_url, options.cookies)
    try:
        driver = launch_chromium()
    except BrowserMissing as exc:
        raise CannotScan(str(exc)) from None
    traffic = Traffic(options.catalog_paths)
    report = Report(upstream, options.start_url)
    server = LoopbackServer(create_scan_app(upstream, traffic)).start()
    try:
        baseline = Run(0, "no delay")
        report.runs.append(baseline)
        for trial in range(1, options.trials + 1):
            _trial(driver, server.url, traffic, options, baseline, trial, report, progress)
        paths = sorted({catalog_path(key) for key in traffic.catalogs})
        # A page that fetches its catalogs one after another races when all are slow; one that fetches them
        # in parallel races only when one is slower than another: each alone covers that.
        plans: list[str | None] = [None, *(paths if options.each_catalog and len(paths) > 1 else [])]
        for delay_ms in options.delays_ms:
            for only in plans:
                run = Run(delay_ms, ALL if only is None else f"only {only}")
                report.runs.append(run)
                for trial in range(1, options.trials + 1):
                    _trial(driver, server.url, traffic, options, run, trial, report, progress, only)
    finally:
        driver.quit()
        server.stop()
    report.catalogs = dict(traffic.catalogs)
    if not report.catalogs:
        raise CannotScan(
            "no catalog response was seen, so nothing was delayed: name the app's model list with --catalog-path REGEX"
        )
    return report


def catalog_path(key: str) -> str:
    """``"GET /api/models/live?provider=x"`` -> ``/api/models/live``: one plan per endpoint, not per query."""
    return key.split(" ", 1)[-1].split("?", 1)[0]


def _trial(
    driver: Any,
    base: str,
    traffic: Traffic,
    options: Options,
    run: Run,
    trial: int,
    report: Report,
    progress: Callable[[str], None],
    only: str | None = None,
) -> list[Finding]:
    delay_ms = run.delay_ms
    reset_chromium(driver)
    if options.local_storage or options.cookies:
        driver.get(base + BLANK_PATH)  # same origin as the app, without running the app's page
        for key, value in options.local_storage.items():
            driver.execute_script("localStorage.setItem(arguments[0], arguments[1])", key, value)
        for name, value in options.cookies.items():
            driver.add_cookie({"name": name, "value": value, "path": "/"})
    traffic.begin_trial(delay_ms / 1000, only)
    driver.get(base + options.start_url)
    _wait_until_quiet(traffic, delay_ms / 1000)
    driver.get("about:blank")  # the page's timers stop here: nothing it does later counts as on-load
    exchanges = list(traffic.exchanges)
    run.trials += 1
    run.writes += sum(1 for e in exchanges if e.method != "GET" and e.method not in ("HEAD", "OPTIONS"))
    found = []
    for change in changes(exchanges):
        stored = _reread(report.upstream, change, options.cookies)
        if stored is _GONE or stored == change.before:
            continue  # the app kept its value (a guard refused or kept it): nothing changed
        found.append(
            Finding(
                change.write.method,
                change.write.target,
                change.field,
                change.before,
                change.after,
                stored,
                change.read_url,
                change.write.body,
                delay_ms,
                run.plan,
                trial,
                round(change.write.at * 1000),
            )
        )
        if not _restore(report.upstream, change, options.cookies):
            report.notes.append(
                f"could not put back {change.field}={change.before!r} after trial {trial} at "
                f"{delay_ms} ms: later trials start from the changed value"
            )
    if found:
        run.trials_with_finding += 1
        report.findings.extend(found)
    what = f"{len(found)} changed value(s)" if found else "nothing changed"
    progress(f"{run.plan if not delay_ms else f'{delay_ms} ms, {run.plan}'}, trial {trial}/{options.trials}: {what}")
    return found


def _wait_until_quiet(traffic: Traffic, delay: float) -> None:
    """Until no request has been in flight for QUIET seconds, or the settle limit: the page is done loading."""
    deadline = time.monotonic() + SETTLE_LIMIT + 3 * delay
    while time.monotonic() < deadline and traffic.quiet_for() < QUIET:
        time.sleep(0.05)  # polling the proxy's own in-flight count


_GONE = object()


def _reread(upstream: str, change: Change, cookies: dict[str, str]) -> Any:
    """The field's value now, read again through the page's own URL, straight from the app."""
    try:
        response = requests.get(
            upstream + change.read_url, headers={"Accept": "application/json"}, cookies=cookies, timeout=10
        )
        obj = find_object(response.json(), change.field, change.identity) if response.ok else None
    except (requests.RequestException, ValueError):
        return _GONE
    return _GONE if obj is None else obj[change.field]


def _restore(upstream: str, change: Change, cookies: dict[str, str]) -> bool:
    """Put the value back the way the page wrote it (same route, same body, the old value) for the next trial."""
    body = {**change.write.body, change.field: change.before}
    # Same-origin, and a deliberate choice: a guarded host lets it through as a user's pick.
    headers = {"Origin": "{0.scheme}://{0.netloc}".format(urlsplit(upstream)), "X-Hermes-Intent": "user"}
    try:
        requests.request(
            change.write.method, upstream + change.write.target, json=body, headers=headers, cookies=cookies, timeout=10
        ).close()
    except requests.RequestException:
        return False
    return _reread(upstream, change, cookies) == change.before
