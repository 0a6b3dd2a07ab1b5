"""What bounding JSON nesting costs: ``jsontext.loads`` against ``json.loads`` on documents a chat app sends.

    python bench/json_depth.py [--repeat 200]

Small documents (fewer than 200 brackets) take only a count of their brackets; larger ones have their
nesting measured outside strings before parsing. Each pair is timed side by side, best of 5 batches.
"""

from __future__ import annotations

import argparse
import json
import timeit

from hermes_plugin.jsontext import loads

DOCUMENTS = {
    "session read (small)": {"session": {"session_id": "s1", "model": "live/kimi-k2", "messages": list(range(20))}},
    "catalog, 2,000 models": {"data": [{"id": f"model-{i}", "object": "model", "owned_by": "acme"} for i in range(2000)]},
    "chat with 300 messages": {"session": {"messages": [{"role": "user", "content": "hello [world] " * 30}
                                                        for _ in range(300)]}},
    "nested 100,000 deep": None,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    print("| document | size | json.loads µs | jsontext.loads µs | ratio |")
    print("|---|---|---|---|---|")
    for label, value in DOCUMENTS.items():
        raw = json.dumps(value).encode() if value is not None else b"[" * 100_000 + b"]" * 100_000

        def standard(raw: bytes = raw) -> None:
            try:
                json.loads(raw)
            except RecursionError:
                pass

        def bounded(raw: bytes = raw) -> None:
            try:
                loads(raw)
            except ValueError:
                pass

        base = min(timeit.repeat(standard, number=args.repeat, repeat=5)) / args.repeat * 1e6
        ours = min(timeit.repeat(bounded, number=args.repeat, repeat=5)) / args.repeat * 1e6
        print(f"| {label} | {len(raw):,} B | {base:.1f} | {ours:.1f} | {ours / base:.2f} |")


if __name__ == "__main__":
    main()
