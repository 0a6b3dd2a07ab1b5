"""RELIABILITY.md part 1: run the Chromium fault matrix (tests/e2e/test_fault_matrix.py) and print it as a table.

Every cell is an asserting test; this command runs them and tabulates what each cell observed:
    python bench/fault_matrix.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "matrix.jsonl"
        env = {**os.environ, "HERMES_FAULT_MATRIX_OUT": str(out)}
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                 "tests/e2e/test_fault_matrix.py"], cwd=ROOT, env=env)
        rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    print()
    print("| fault | cache | page's live state | guard pending (ms) | picker shows | user told | stored model |")
    print("| --- | --- | --- | ---: | --- | --- | --- |")
    for row in rows:
        ms = "-" if row["pending_ms"] is None else f"{row['pending_ms']:.0f}"
        told = row["notice"] or ("stale catalog served, nothing to tell" if row["page_state"] == "stale" else "-")
        print(f"| {row['fault']} | {row['cache']} | {row['page_state']} | {ms} | {row['shown']} | {told} "
              f"| {row['stored']} |")
    timeouts = {row["timeout_s"] for row in rows if row["timeout_s"]}
    print(f"\n{len(rows)} cells recorded; fetch timeout {', '.join(f'{t:g} s' for t in timeouts)}; "
          f"pytest exit status {result.returncode} ({'all cells held' if result.returncode == 0 else 'FAILURES'})")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
