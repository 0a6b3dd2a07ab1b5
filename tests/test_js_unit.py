"""Runs the browser guard's own unit tests (`node --test tests/js/`) as part of the one test command:
on the readable source, and again on the minified build the package serves."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hermes_plugin import script

JS_TESTS = Path(__file__).parent / "js"


def run_node_tests(env: dict[str, str] | None = None) -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed: .ci/run installs nodejs for the guard script's unit tests")
        pytest.skip("node is not installed")
    result = subprocess.run([node, "--test", str(JS_TESTS)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout and "# pass 0" not in result.stdout


def test_guard_script_node_unit_tests() -> None:
    run_node_tests()


def test_guard_script_node_unit_tests_on_the_served_build(tmp_path: Path) -> None:
    build = tmp_path / "hermes-guard.min.js"
    build.write_text(script.minified())
    run_node_tests({"HERMES_GUARD_JS": str(build)})
