"""The package installs both ways a user installs it: from the built wheel and with ``pip install .``.

Each test builds from a copy of the checkout (setuptools writes ``build/`` and ``*.egg-info`` beside the
sources), installs into its own fresh virtual environment (dependencies from the index and the local wheel
cache), then, outside the checkout, imports every module of the installed package, runs the console script
and finds the bundled provider kinds and browser assets inside the installed package. Last, code run from
the checkout (whose ``hooks/`` and ``static/`` sit beside the package folder) must still import, with that
same environment. The two tests are independent, so pytest-xdist runs them side by side.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALL_TIMEOUT = 900  # seconds: an upper bound for pip on a loaded machine, never a synchronisation delay

# Files that must be inside the installed package, mapped from the checkout's top-level folders.
BUNDLED = (
    "hooks/ollama.py",
    "hooks/openai_compatible.py",
    "hooks/anthropic.py",
    "hooks/static_file.py",
    "static/hermes-guard.js",
    "demo/templates/index.html",
    "demo/static/demo.js",
    "py.typed",
)
# Modules that need the test tools (the pytest plugin and the browser helper it uses).
NEEDS_PYTEST = {"hermes_plugin.pytest_plugin", "hermes_plugin.testing.browser"}

# Run inside the fresh environment: every module of the installed package, where each file came from.
PROBE = """
import importlib, json, pkgutil, sys
import hermes_plugin
from hermes_plugin import api
modules, failed = [], {}
for info in pkgutil.walk_packages(hermes_plugin.__path__, "hermes_plugin."):
    try:
        importlib.import_module(info.name)
        modules.append(info.name)
    except Exception as exc:
        failed[info.name] = repr(exc)
print(json.dumps({"package": hermes_plugin.__file__, "path": list(hermes_plugin.__path__), "modules": modules,
                  "failed": failed, "static": api.static_folder(),
                  "hooks": importlib.import_module("hermes_plugin.hooks.ollama").__file__}))
"""


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    assert done.returncode == 0, (
        f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done


def _source_copy(tmp_path: Path) -> Path:
    """The checkout's files as a user's clone has them (no build leftovers, caches or virtual environments)."""
    skipped = shutil.ignore_patterns(
        ".git",
        ".venv*",
        "venv",
        ".tox",
        "build",
        "dist",
        "*.egg-info",
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        "instance",
        "node_modules",
        ".hypothesis",  # written by other tests running at the same time
        "*.sqlite",
    )
    return Path(shutil.copytree(ROOT, tmp_path / "checkout", ignore=skipped))


def _fresh_venv(tmp_path: Path) -> Path:
    """A new virtual environment with the Python's own pip; returns its python."""
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env)
    return env / "bin" / "python"


def _pip_install(python: Path, *targets: str, cwd: Path) -> None:
    _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *targets], cwd)


def _probe(python: Path, cwd: Path) -> dict[str, object]:
    result: dict[str, object] = json.loads(_run([str(python), "-c", PROBE], cwd).stdout)
    return result


def _check_installed(python: Path, outside: Path) -> None:
    """Outside the checkout: every module imports from site-packages, with its bundled files, and the CLI runs."""
    found = _probe(python, outside)
    site = python.parent.parent
    package = Path(str(found["package"])).parent
    assert package.is_relative_to(site), f"imported {package}, not the installed copy under {site}"
    assert found["failed"] == {}, found["failed"]
    modules = set(found["modules"])  # type: ignore[call-overload]
    expected = {
        "hermes_plugin.proxy.relay",
        "hermes_plugin.state.sqlite",
        "hermes_plugin.testing.recorder",
        "hermes_plugin.demo.plain",
        "hermes_plugin.hooks.static_file",
        "hermes_plugin.checkout",
        *NEEDS_PYTEST,
    }
    assert expected <= modules, f"not importable from the install: {sorted(expected - modules)}"
    for name in BUNDLED:
        assert (package / name).is_file(), f"{name} is missing from the installed package {package}"
    assert Path(str(found["static"])) == package / "static"
    assert Path(str(found["hooks"])) == package / "hooks" / "ollama.py"
    cli = _run([str(python.parent / "hermes-plugin"), "--help"], outside)
    assert "Usage: hermes-plugin" in cli.stdout and "demo" in cli.stdout and "proxy" in cli.stdout


def _check_checkout_still_imports(python: Path, checkout: Path) -> None:
    """From the checkout, with the package installed non-editable, its own folders are what is imported."""
    found = _probe(python, checkout)
    assert Path(str(found["package"])) == checkout / "hermes_plugin" / "__init__.py"
    assert Path(str(found["hooks"])) == checkout / "hooks" / "ollama.py"
    assert Path(str(found["static"])) == checkout / "static"
    assert found["failed"] == {}, found["failed"]


@pytest.mark.install
def test_the_wheel_installs_in_a_fresh_venv_and_the_checkout_still_imports(tmp_path: Path) -> None:
    checkout = _source_copy(tmp_path)
    dist = tmp_path / "dist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "--wheel-dir",
            str(dist),
            str(checkout),
        ],
        tmp_path,
    )
    (wheel,) = dist.glob("hermes_plugin-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in BUNDLED if f"hermes_plugin/{name}" not in names]
    assert not missing, f"{wheel.name} lacks {missing}"
    assert not any(name.split("/")[0] in {"hooks", "static", "tests", "bench"} for name in names), (
        "the wheel installs a generic top-level folder"
    )
    python = _fresh_venv(tmp_path)
    _pip_install(python, str(wheel), "pytest", cwd=tmp_path)
    _check_installed(python, outside=tmp_path)
    _check_checkout_still_imports(python, checkout)


@pytest.mark.install
def test_pip_install_dot_works_in_a_fresh_venv_and_the_checkout_still_imports(tmp_path: Path) -> None:
    checkout = _source_copy(tmp_path)
    python = _fresh_venv(tmp_path)
    _pip_install(python, ".", "pytest", cwd=checkout)  # literally `pip install .` in the clone
    _check_installed(python, outside=tmp_path)
    _check_checkout_still_imports(python, checkout)
