"""tests/sample_plugin, a tiny real distribution with entry points, installed by pip into a directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

SAMPLE_PROJECT = Path(__file__).parent.parent / "sample_plugin"
SAMPLE_MODULES = ("hermes_sample_plugin", "hermes_sample_broken")


def install_sample_plugin(work: Path) -> Path:
    """``pip install --target work/site`` of the sample project; returns the site directory to put on a path.

    pip builds it in its own isolated environment (setuptools from the index), so nothing beyond the
    Python's own pip needs to be installed first.
    """
    # A copy, because setuptools writes build/ and *.egg-info next to the sources it builds.
    source = shutil.copytree(SAMPLE_PROJECT, work / "src", ignore=shutil.ignore_patterns("__pycache__", "build",
                                                                                        "*.egg-info"))
    site = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
                    "--target", str(site), str(source)], check=True, capture_output=True, timeout=300)
    assert (site / "hermes_sample_plugin-0.1.0.dist-info").is_dir()
    return site
