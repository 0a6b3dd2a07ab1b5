"""The ``hermes-plugin`` command line (also ``flask hermes-plugin``): providers, catalogs, plugins, the demo."""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from .config import CONFIG_ENV, load_providers
from .errors import ConfigError, HermesPluginError, PluginRegistrationError, UnknownProviderError
from .names import EXTENSION
from .redact import printable

T = TypeVar("T")
FAIL_MODES = ("none", "live", "static", "timeout", "refused")
DEBUG_ENV = "HERMES_PLUGIN_DEBUG"


class CLIError(click.ClickException):
    """One ``Error: ...`` line on stderr; exit 2 for bad input (config, names), 1 for everything else."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(" ".join(message.split()))  # multi-line messages would break the one-line promise
        self.exit_code = exit_code  # type: ignore[misc]  # a ClassVar in newer click; per instance here


class _Group(click.Group):
    """Turns the errors a user can cause or meet into one line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, UnknownProviderError) as exc:
            raise CLIError(str(exc), exit_code=2) from None
        except (HermesPluginError, OSError) as exc:
            raise CLIError(str(exc) or type(exc).__name__) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:  # a plugin or provider bug still must not dump a traceback on users
            if os.environ.get(DEBUG_ENV):
                raise
            raise CLIError(f"unexpected {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)") from None


@dataclass
class Env:
    """What the global options resolve to; heavy objects are built on first use so ``demo``/``--help`` stay cheap."""

    ctx: click.Context
    config_path: str | None
    cache: str | None
    _app: Any = None
    _app_loaded: bool = False
    _pm: Any = None
    _service: Any = None
    _warned: set[str] = field(default_factory=set)

    def app(self) -> Any:
        """The Flask app when run as ``flask hermes-plugin``, else None."""
        if not self._app_loaded:
            self._app_loaded = True
            self._app = _flask_app(self.ctx)
        return self._app

    def guard_state(self) -> Any:
        app = self.app()
        return None if app is None else app.extensions.get(EXTENSION)

    def providers_config(self) -> dict[str, Any]:
        """TOML providers (``--config`` / ``$HERMES_PLUGIN_CONFIG``), overridden by the app's ``HERMES_PLUGIN_PROVIDERS``."""
        app = self.app()
        path = self.config_path or (app.config.get("HERMES_PLUGIN_CONFIG") if app is not None else None)
        table = load_providers(path)
        if app is not None:
            configured = app.config.get("HERMES_PLUGIN_PROVIDERS") or {}
            if not isinstance(configured, Mapping):
                raise ConfigError("HERMES_PLUGIN_PROVIDERS must be a dict keyed by provider id")
            table.update(configured)
        return table

    def pm(self) -> Any:
        if self._pm is None:
            self._pm = _state_attr(self.guard_state(), "pm")
        if self._pm is None:
            from .plugins import make_plugin_manager

            self._pm = make_plugin_manager()
        return self._pm

    def service(self) -> Any:
        """The app's own catalog service under ModelGuard, else one built from the config (closed on exit)."""
        if self._service is None:
            self._service = _state_attr(self.guard_state(), "catalog")
        if self._service is None:
            from .catalog import CatalogService

            app = self.app()
            cache = self.cache or (app.config.get("HERMES_PLUGIN_CACHE") if app is not None else None) or "sqlite"
            cache_dir = None
            if app is not None and cache == "sqlite":  # share the cache file the extension would use
                os.makedirs(app.instance_path, exist_ok=True)
                from .http import instance_cache_dir

                cache_dir = instance_cache_dir(app.instance_path)
            self._service = CatalogService(self.pm(), self.providers_config(), cache=cache, cache_dir=cache_dir)
            self.ctx.call_on_close(self._service.close)
        self.warn_plugin_errors(getattr(self._service, "plugin_errors", []))
        return self._service

    def registrations(self) -> tuple[dict[str, Any], list[PluginRegistrationError]]:
        """Provider specs and registration errors, without any network I/O."""
        from .plugins import collect_registrations

        return collect_registrations(self.pm(), self.providers_config())

    def warn_plugin_errors(self, errors: list[PluginRegistrationError]) -> None:
        # A broken plugin does not stop the command, but the user must hear about it once.
        for error in errors:
            line = printable(" ".join(str(error).split()))  # a plugin's text: no terminal escapes
            if line not in self._warned:
                self._warned.add(line)
                click.echo(f"Warning: {line}", err=True)


def _state_attr(state: Any, name: str) -> Any:
    if state is None:
        return None
    if isinstance(state, Mapping):
        return state.get(name)
    return getattr(state, name, None)


def _flask_app(ctx: click.Context) -> Any:
    # flask.cli is only imported when the `flask` command runs us; the console script never pays for it.
    flask_cli = sys.modules.get("flask.cli")
    if flask_cli is None:
        return None
    import flask

    if flask.has_app_context():
        return flask.current_app._get_current_object()  # type: ignore[attr-defined]
    info = ctx.find_object(flask_cli.ScriptInfo)
    if info is None:
        return None
    try:
        app = info.load_app()
    except flask_cli.NoAppException as exc:
        raise CLIError(exc.format_message(), exit_code=2) from None
    ctx.with_resource(app.app_context())
    return app


def _env(ctx: click.Context) -> Env:
    # Not ctx.obj: under `flask hermes-plugin` that slot holds Flask's ScriptInfo.
    env: Env = ctx.meta["hermes_plugin.env"]
    return env


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar=CONFIG_ENV,
              help=f"TOML file with [providers.<id>] tables (default: ${CONFIG_ENV}).")
@click.option("--cache", default=None, metavar="memory|sqlite|PATH|redis://...",
              help="HTTP cache for live catalogs (default: sqlite in the user cache dir).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, cache: str | None) -> None:
    """Inspect hermes-plugin providers, catalogs and plugins, or run the demo host."""
    _quiet_library_logs()
    ctx.meta["hermes_plugin.env"] = Env(ctx, config_path, cache)


def _quiet_library_logs() -> None:
    # With no logging configured, Python prints library warnings raw on stderr (logging.lastResort); the CLI
    # already reports plugin errors and fetch errors itself, once and in its own format.
    if os.environ.get(DEBUG_ENV):
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
        return
    logger = logging.getLogger("hermes_plugin")
    if not logging.getLogger().handlers and not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


def _age(fetched_at: float | None, now: float) -> str:
    if fetched_at is None:
        return "never fetched"
    seconds = max(0, int(now - fetched_at))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"fetched {seconds // size}{unit} ago"
    return f"fetched {seconds}s ago"


def _with_progress(work: Callable[[], T], label: str) -> T:
    """Run ``work`` while a spinner turns on stderr; no spinner when stderr is not a terminal."""
    stream = sys.stderr  # click.get_text_stream is deprecated (Click 9); CliRunner swaps sys.stderr too
    if not stream.isatty():
        return work()
    done = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:  # handed back to the main thread and re-raised there
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="hermes-plugin-cli-fetch", daemon=True).start()
    frames = itertools.cycle("|/-\\")
    while not done.wait(0.1):
        stream.write(f"\r{next(frames)} {label}")
        stream.flush()
    stream.write("\r\x1b[K")
    stream.flush()
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]


def _kind(spec: Any, table: Mapping[str, Any]) -> str:
    if spec.plugin == "config" and isinstance(table.get(spec.id), Mapping):
        return str(table[spec.id].get("kind", "static"))
    if spec.live is None:
        return "static"
    return "callable" if not hasattr(spec.live, "fetch") else type(spec.live).__name__


def _print_table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def providers(ctx: click.Context, as_json: bool) -> None:
    """List registered providers: id, label, kind, plugin and whether a live source is declared."""
    env = _env(ctx)
    table = env.providers_config()
    specs, errors = env.registrations()
    env.warn_plugin_errors(errors)
    items = [{"id": spec.id, "label": spec.label or spec.id, "kind": _kind(spec, table), "plugin": spec.plugin,
              "live": spec.live is not None, "static": len(spec.static)} for spec in specs.values()]
    if as_json:
        click.echo(json.dumps({"providers": items}, indent=2))
        return
    if not items:
        click.echo("No providers registered (add [providers.<id>] tables to a --config file, or install a plugin).")
        return
    _print_table([[i["id"], i["label"], i["kind"], i["plugin"], "yes" if i["live"] else "no", str(i["static"])]
                  for i in items], ["ID", "LABEL", "KIND", "PLUGIN", "LIVE", "STATIC"])


@cli.command()
@click.argument("provider", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the GET /api/catalog JSON shape.")
@click.option("--refresh", is_flag=True, help="Refetch live catalogs instead of using the cache.")
@click.pass_context
def catalog(ctx: click.Context, provider: str | None, as_json: bool, refresh: bool) -> None:
    """Show each provider's merged catalog: state, age, error and models with their source."""
    svc = _env(ctx).service()
    if provider is not None:
        if provider not in svc.provider_ids():
            raise UnknownProviderError(provider)
        one = _with_progress(lambda: svc.catalog(provider, refresh=refresh), f"fetching {provider} ...")
        catalogs = [one]
    else:
        catalogs = _with_progress(lambda: list(svc.catalogs(refresh=refresh)), "fetching live catalogs ...")
    if as_json:
        payload = catalogs[0].to_json() if provider is not None else {"providers": [c.to_json() for c in catalogs]}
        click.echo(json.dumps(payload, indent=2))
        return
    if not catalogs:
        click.echo("No providers registered.")
        return
    now = time.time()
    for number, cat in enumerate(catalogs):
        if number:
            click.echo()
        data = cat.to_json()
        title = data["id"] if data["label"] in (None, data["id"]) else f"{data['id']} ({data['label']})"
        line = f"{title}  {data['state']}  {_age(data['fetched_at'], now)}"
        click.echo(printable(line + (f"  error: {data['error']}" if data["error"] else "")))
        if not data["models"]:
            click.echo("  (no models)")
        rows = [["  " + m["id"], m["source"], "" if m["label"] in (None, m["id"]) else m["label"]] for m in data["models"]]
        if rows:
            widths = [max(len(r[i]) for r in rows) for i in range(2)]
            for row in rows:
                click.echo(f"{row[0].ljust(widths[0])}  {row[1].ljust(widths[1])}  {row[2]}".rstrip())


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List loaded plugins, their hooks and distributions, and any registration errors."""
    from .plugins import plugin_infos

    env = _env(ctx)
    infos = plugin_infos(env.pm())
    _, errors = env.registrations()
    error_items = [{"plugin": e.plugin, "error": " ".join(str(e.error).split())} for e in errors]
    if as_json:
        click.echo(json.dumps({"plugins": infos, "errors": error_items}, indent=2))
        return
    for info in infos:
        dist = info["distribution"] or "-"
        if info["version"]:
            dist += f" {info['version']}"
        click.echo(f"{info['name']}  [{dist}]")
        click.echo(f"  hooks: {', '.join(info['hooks']) or '-'}")
    if error_items:
        click.echo("Errors:")
        for item in error_items:
            click.echo(f"  {item['plugin']}: {item['error']}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535))
@click.option("--latency", "latency_ms", default=300, show_default=True, type=click.IntRange(0),
              help="Live catalog latency in ms.")
@click.option("--static-latency", "static_latency_ms", default=0, show_default=True, type=click.IntRange(0),
              help="Static catalog latency in ms.")
@click.option("--fail", default="none", show_default=True, type=click.Choice(FAIL_MODES),
              help="Make the simulated providers fail.")
@click.option("--no-guard", is_flag=True, help="Run the naive host without hermes-plugin (shows the bug).")
@click.option("--data", "data_dir", default=None, type=click.Path(file_okay=False),
              help="Where sessions are stored (default: a temporary directory).")
def demo(host: str, port: int, latency_ms: int, static_latency_ms: int, fail: str, no_guard: bool,
         data_dir: str | None) -> None:
    """Run the reference chat host that reproduces the model-overwrite race (Ctrl-C to stop)."""
    try:
        from .demo import run_demo  # type: ignore[attr-defined]
    except ImportError as exc:
        raise CLIError(f"the demo host is not available: {exc}") from None
    run_demo(host=host, port=port, latency_ms=latency_ms, static_latency_ms=static_latency_ms, fail=fail,
             guard=not no_guard, data_dir=data_dir)


@cli.command()
@click.option("--upstream", required=True, metavar="URL",
              help="The chat app to guard, e.g. http://127.0.0.1:8787 (it keeps running unchanged).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface the proxy listens on.")
@click.option("--port", default=8788, show_default=True, type=click.IntRange(0, 65535),
              help="Port the proxy listens on; open the app at this address instead of the upstream's.")
@click.option("--config", "proxy_config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML file with a [proxy] table (write routes, session read, catalog URLs) and [providers.*].")
@click.option("--preset", default=None, metavar="NAME",
              help="Built-in [proxy] table for a known app instead of --config: hermes-webui, demo.")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="A Host name the proxy answers to (repeatable; '*' for any). Default: [proxy] allowed_hosts, "
                   "else localhost, 127.0.0.1 and ::1 when listening on loopback.")
@click.option("--redis", "redis_url", default=None, metavar="redis://...", envvar="HERMES_PLUGIN_REDIS_URL",
              help="Share guard state, catalog cache and WebSocket events with other proxy processes and hosts.")
@click.pass_context
def proxy(ctx: click.Context, upstream: str, host: str, port: int, proxy_config_path: str | None,
          preset: str | None, allowed_hosts: tuple[str, ...], redis_url: str | None) -> None:
    """Guard an app that is not a Flask app: serve it through a reverse proxy that adds hermes-plugin.

    Every request is forwarded to --upstream unchanged (streams, server-sent events, WebSockets, cookies,
    redirects); on the way the proxy injects the browser guard into HTML pages, guards the model writes
    the config names, learns catalogs from the app's own catalog responses and serves /hermes-plugin/.
    For production run it under gunicorn (docs/proxy.md). Ctrl-C to stop.

    \b
    Example:
      hermes-plugin proxy --upstream http://127.0.0.1:8787 --preset hermes-webui
    """
    from .extension import LOOPBACK_HOSTS
    from .proxy import create_app, load_config
    from .proxy.serving import make_proxy_server

    config_path = proxy_config_path or (None if preset else _env(ctx).config_path)
    cfg = load_config(config_path, preset)
    if allowed_hosts:
        cfg.allowed_hosts = list(allowed_hosts)
    elif cfg.allowed_hosts is None and host in LOOPBACK_HOSTS:  # a page on another name is a rebound DNS name
        cfg.allowed_hosts = list(LOOPBACK_HOSTS)
    app = create_app(upstream, cfg=cfg, app_config={"HERMES_PLUGIN_REDIS_URL": redis_url} if redis_url else None)
    logging.getLogger("hermes_plugin.proxy.access").setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger("hermes_plugin.proxy.access").addHandler(handler)
    server: Any = make_proxy_server(host, port, app)
    click.echo(f"hermes-plugin proxy: http://{host}:{server.port}/ -> {upstream} "
               f"({'preset ' + preset if preset else config_path})")
    click.echo("  Ctrl-C to stop", err=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    """Console script entry point (``hermes-plugin``)."""
    cli.main(args=argv, prog_name="hermes-plugin")


def _add_commands() -> None:
    """Commands that live in their own packages."""
    from .impact_command import impact_command
    from .scan.command import scan_command

    cli.add_command(impact_command)
    cli.add_command(scan_command)


_add_commands()
