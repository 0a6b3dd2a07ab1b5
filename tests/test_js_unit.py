"""Runs the browser guard's own unit tests (`node --test tests/js/`) as part of the one test command."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

JS_TESTS = Path(__file__).parent / "js"


def test_guard_script_node_unit_tests() -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed: .ci/run installs nodejs for the guard script's unit tests")
        pytest.skip("node is not installed")
    result = subprocess.run([node, "--test", str(JS_TESTS)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout and "# pass 0" not in result.stdout
