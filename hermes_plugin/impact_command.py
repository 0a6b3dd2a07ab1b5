"""``hermes-plugin impact``: which sessions and default models point at a model no provider lists any more."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import requests

from .cli import CLIError, _env, _with_progress
from .redact import printable


@click.command("impact")
@click.option(
    "--url",
    default=None,
    metavar="URL",
    help="Ask a running host or proxy (its impact API, recomputed now) instead of computing here.",
)
@click.option("--prefix", default="/hermes-plugin", show_default=True, help="The plugin's URL prefix for --url.")
@click.option("--json", "as_json", is_flag=True, help="Print the /hermes-plugin/api/impact JSON shape.")
@click.pass_context
def impact_command(ctx: click.Context, url: str | None, prefix: str, as_json: bool) -> None:
    """List sessions and default models whose model the catalogs now confirm absent.

    Run as ``flask hermes-plugin impact`` in a Flask app with ModelGuard (the sessions come from its
    ``guard.session_ids`` / ``hermes_plugin_session_ids`` sources; a progress bar counts them), or give
    --url to ask a running host or ``hermes-plugin proxy`` for its report.

    \b
    Example:
      hermes-plugin impact --url http://127.0.0.1:8788
    """
    report = _remote(url.rstrip("/") + prefix + "/api/impact?refresh=1") if url else _local(ctx)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(render(report))


def _remote(url: str) -> dict[str, Any]:
    try:
        response = requests.get(url, headers={"Accept": "application/json"}, timeout=120)
    except requests.RequestException as exc:
        raise CLIError(f"{url} did not answer ({type(exc).__name__})") from None
    if response.status_code != 200:
        raise CLIError(f"{url} answered HTTP {response.status_code}: {printable(response.text[:200])}")
    try:
        data = response.json()
    except ValueError:
        raise CLIError(f"{url} did not answer with JSON") from None
    if not isinstance(data, dict) or "counts" not in data:
        raise CLIError(f"{url} is not an impact report")
    return data


def _local(ctx: click.Context) -> dict[str, Any]:
    state = _env(ctx).guard_state()
    if state is None or not hasattr(state, "impact"):
        raise CLIError(
            "no app to ask: run it as `flask hermes-plugin impact` in an app with ModelGuard, "
            "or give --url of a running host or proxy",
            exit_code=2,
        )
    _with_progress(lambda: state.catalog.catalogs(), "fetching live catalogs ...")
    if not state.impact.has_sources():
        report = state.impact.run()
    else:
        sessions = list(state.impact.sessions())
        with click.progressbar(length=len(sessions), label="checking sessions", file=sys.stderr) as bar:
            report = state.impact.run(progress=bar.update, sessions=sessions)
    return dict(report.to_json())


def render(report: dict[str, Any]) -> str:
    """The report as text: the counts, then one row per session and default on a gone model."""
    if not report.get("sources", True):
        return "No session source registered: see guard.session_ids in the docs (hooks: hermes_plugin_session_ids)."
    counts = report["counts"]
    lines = [
        f"{counts['sessions']} of {counts['checked']} sessions and {counts['defaults']} defaults point at a "
        f"model no provider lists any more ({counts['unknown']} sessions cannot be judged now)."
    ]
    rows = [
        [printable(str(e["session"])), printable(str(e["model"])), printable(str(e.get("reason") or ""))]
        for e in report["sessions"]
    ]
    defaults = [
        [printable(str(e["name"])), printable(str(e["model"])), printable(str(e.get("reason") or ""))]
        for e in report["defaults"]
    ]
    lines.extend(_table(rows, ["SESSION", "MODEL", "REASON"]) if rows else [])
    lines.extend(_table(defaults, ["DEFAULT", "MODEL", "REASON"]) if defaults else [])
    lines.extend(f"error: {printable(str(e))}" for e in report.get("errors", []))
    return "\n".join(lines)


def _table(rows: list[list[str]], headers: list[str]) -> list[str]:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [headers, *rows]]
