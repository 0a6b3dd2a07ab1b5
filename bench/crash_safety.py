"""RELIABILITY.md part 4: kill -9 the `hermes-plugin demo` host at random points during writes and check the store.

    python bench/crash_safety.py [--trials 200]
Same code as tests/test_crash_safety.py; prints how many kills, writes and outcomes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_crash_safety import INITIAL, check, one_trial  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=200)
    args = parser.parse_args()
    failures: list[str] = []
    outcome: Counter[str] = Counter()
    writes = leftovers = 0
    with tempfile.TemporaryDirectory() as tmp:
        before = dict(INITIAL)
        for seed in range(args.trials):
            trial = one_trial(Path(tmp), seed)
            try:
                check(trial, before)
            except AssertionError as exc:
                failures.append(f"seed {seed}: {exc}")
            for sid, model in trial.models.items():
                outcome["old model" if model == before[sid] else "new model"] += 1
            writes += trial.completed
            leftovers = max(leftovers, trial.leftovers)
            before = trial.models
    print("| kills (SIGKILL) | writes completed before the kills | session file parsed | sessions old / new model "
          "| wrong or torn | max temp files left |")
    print("| ---: | ---: | --- | --- | ---: | ---: |")
    print(f"| {args.trials} | {writes} | {args.trials}/{args.trials} | {outcome['old model']} / {outcome['new model']} "
          f"| {len(failures)} | {leftovers} |")
    for failure in failures:
        print("FAIL", failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
