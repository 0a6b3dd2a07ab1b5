"""``hermes-plugin scan``: the race scanner on the command line (exit 1 found, 0 none, 2 could not run)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..errors import ConfigError
from ..redact import printable
from .runner import CannotScan, Options, Report, scan

EXIT_FOUND, EXIT_NONE, EXIT_CANNOT = 1, 0, 2


def _pairs(pairs: tuple[str, ...], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=option)
        out[key] = value
    return out


@click.command("scan")
@click.option("--upstream", required=True, metavar="URL", help="The running app to scan, e.g. http://127.0.0.1:8787.")
@click.option(
    "--start-url",
    default="/",
    show_default=True,
    metavar="PATH",
    help="The page to open, as a path on the app (e.g. '/?session=kimi').",
)
@click.option(
    "--catalog-path",
    "catalog_paths",
    multiple=True,
    metavar="REGEX",
    help="Also delay answers whose path and query match REGEX (repeatable); JSON lists of model ids "
    "are found without it.",
)
@click.option(
    "--trials",
    default=3,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Page loads without delay, and again at each delay.",
)
@click.option(
    "--delay",
    "delays_ms",
    multiple=True,
    type=click.IntRange(1, 60000),
    metavar="MS",
    help="A catalog delay in milliseconds (repeatable; default 500 and 2000).",
)
@click.option(
    "--each-catalog/--all-catalogs-only",
    default=True,
    show_default=True,
    help="At each delay, also delay each catalog endpoint alone (finds pages that fetch catalogs in parallel).",
)
@click.option(
    "--local-storage",
    "local_storage",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set in the page's localStorage before each load (e.g. the session the app restores).",
)
@click.option(
    "--cookie",
    "cookies",
    multiple=True,
    metavar="NAME=VALUE",
    help="A cookie for the page and the scanner's own reads (e.g. a signed-in session; repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def scan_command(
    upstream: str,
    start_url: str,
    catalog_paths: tuple[str, ...],
    trials: int,
    delays_ms: tuple[int, ...],
    each_catalog: bool,
    local_storage: tuple[str, ...],
    cookies: tuple[str, ...],
    as_json: bool,
) -> None:
    """Find writes a page makes on load, without user input, that change a stored value.

    Serves the app through a proxy of its own on a free loopback port, delays its model-catalog answers,
    opens --start-url in headless Chromium --trials times without delay, then at each --delay with every
    catalog delayed and with each catalog endpoint delayed alone, and reports
    each write that changed a value the page had just read (request, before/after, the delay it needs).
    A value a write changed is put back before the next trial. Exit status: 1 when such a write was
    found, 0 when none, 2 when the scan could not run (no Chromium, the app down, no catalog seen).

    \b
    Example:
      hermes-plugin scan --upstream http://127.0.0.1:8787 --start-url '/?session=kimi' --trials 5
    """
    options = Options(
        upstream,
        start_url,
        trials,
        delays_ms or (500, 2000),
        catalog_paths,
        each_catalog,
        _pairs(local_storage, "--local-storage"),
        _pairs(cookies, "--cookie"),
    )
    show = (lambda line: None) if as_json else (lambda line: click.echo(f"  {line}", err=True))
    try:
        report = scan(options, progress=show)
    except (CannotScan, ConfigError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_CANNOT)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2, default=str))
    else:
        click.echo(render(report))
    sys.exit(EXIT_FOUND if report.found else EXIT_NONE)


def _text(value: Any) -> str:
    return printable(json.dumps(value, default=str))


def render(report: Report) -> str:
    """The report as text: the catalogs delayed, the trials per delay, then each finding."""
    lines = [f"hermes-plugin scan of {printable(report.upstream + report.start_url)}"]
    lines.append("catalogs delayed: " + ", ".join(f"{printable(c)} ({n} models)" for c, n in report.catalogs.items()))
    for run in report.runs:
        where = "no delay" if not run.delay_ms else f"delay {run.delay_ms} ms, {run.plan}"
        lines.append(
            f"  {printable(where)}: {run.trials_with_finding}/{run.trials} trials changed a stored value "
            f"({run.writes} writes on load)"
        )
    groups = report.grouped()
    if not groups:
        lines.append("FOUND NOTHING: no write on load changed a stored value")
    for group in groups:
        seen = "; ".join(f"{n}x with {printable(where)}" for where, n in group["seen"].items())
        lines.append(
            f"FOUND: {printable(group['method'])} {printable(group['url'])} set {printable(group['field'])} "
            f"{_text(group['before'])} -> {_text(group['after'])} (was {_text(group['before'])} in "
            f"GET {printable(group['read_url'])}; stored now {_text(group['stored'])}); from delay "
            f"{group['first_delay_ms']} ms ({seen})"
        )
        lines.append(f"       body: {_text(group['body'])}")
    lines.extend(f"note: {printable(n)}" for n in report.notes)
    return "\n".join(lines)
