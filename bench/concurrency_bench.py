"""RELIABILITY.md part 3: 50 clients x N guarded writes against one session and across sessions, with and without
If-Match; prints lost updates and throughput (same code as tests/test_concurrency.py).

    python bench/concurrency_bench.py [--writes 100] [--clients 50]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_concurrency import SESSIONS_ACROSS, assert_consistent, run_load  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--writes", type=int, default=100, help="guarded writes per client")
    args = parser.parse_args()
    print("| target | mode | clients x writes | written | 412 stale_version | lost updates | errors | writes/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    failed = False
    for sessions in (1, SESSIONS_ACROSS):
        for if_match in (True, False):
            with tempfile.TemporaryDirectory() as tmp:
                load, final, _ = run_load(Path(tmp), sessions, if_match, args.clients, args.writes)
            row = load.row()
            try:
                assert_consistent(load, final)
                if if_match:
                    assert load.lost_updates() == 0
            except AssertionError as exc:
                failed = True
                print(f"INCONSISTENT: {exc}", file=sys.stderr)
            target = "one session" if sessions == 1 else f"{sessions} sessions"
            print(f"| {target} | {row['mode']} | {args.clients} x {args.writes} | {row['written']} | {row['412']} "
                  f"| {row['lost']} | {row['errors']} | {row['writes_per_s']} |", flush=True)
    print("\nEach write is preceded by a GET of the session's version (the client's base); the host, the guard and "
          "the clients share one process on loopback (werkzeug threaded server, JSON file store with fsync).")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
