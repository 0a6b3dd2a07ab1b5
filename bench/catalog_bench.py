"""Catalog benchmark: upstream requests for K concurrent callers (single flight), and cached vs uncached latency.

Run: python bench/catalog_bench.py [--runs 200] [--latency-ms 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from hermes_plugin.hooks.openai_compatible import OpenAICompatible

from hermes_plugin.catalog import CatalogService
from hermes_plugin.http import ProviderHTTP
from hermes_plugin.plugins import make_spec
from hermes_plugin.testing.fake_provider import FakeProvider

MODELS = [f"bench/model-{i:03d}" for i in range(50)]


def concurrent_callers(k: int, latency: float) -> tuple[int, float]:
    """K threads released together call catalog() once each: (upstream requests, wall seconds)."""
    with FakeProvider("openai", MODELS, latency=latency) as fake:
        svc = CatalogService(specs=[make_spec("p", live=OpenAICompatible(fake.base_url))], cache="memory")
        barrier = threading.Barrier(k + 1)
        threads = [threading.Thread(target=lambda: (barrier.wait(), svc.catalog("p"))) for _ in range(k)]
        for thread in threads:
            thread.start()
        barrier.wait()
        start = time.perf_counter()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
        svc.close()
        return fake.requests, wall


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def latencies(runs: int, cache_dir: Path) -> dict[str, float]:
    """Median catalog() latency: uncached (refresh), HTTP-cache hit, and in-memory hit, in one run."""
    with FakeProvider("openai", MODELS) as fake:
        svc = CatalogService(specs=[make_spec("p", live=OpenAICompatible(fake.base_url))],
                             cache=str(cache_dir / "bench.sqlite"), refresh_interval=0)  # every refresh refetches
        source = OpenAICompatible(fake.base_url)
        uncached, http_cached, memo = [], [], []
        svc.catalog("p")
        for _ in range(runs):
            start = time.perf_counter()
            svc.catalog("p", refresh=True)
            uncached.append(time.perf_counter() - start)
            start = time.perf_counter()
            source.fetch(ProviderHTTP(svc.session))  # what a new process finds in the sqlite cache
            http_cached.append(time.perf_counter() - start)
            start = time.perf_counter()
            svc.catalog("p")
            memo.append(time.perf_counter() - start)
        svc.close()
        return {"uncached": median_ms(uncached), "http_cache": median_ms(http_cached), "memory": median_ms(memo),
                "upstream": fake.requests}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="samples per latency median")
    parser.add_argument("--latency-ms", type=float, default=200, help="fake provider latency for the K test")
    args = parser.parse_args()
    print(f"single flight: FakeProvider latency {args.latency_ms:g} ms, fresh memory cache per K")
    print(f"{'K':>5} {'upstream requests':>18} {'wall ms':>9}")
    for k in (1, 10, 100):
        requests_made, wall = concurrent_callers(k, args.latency_ms / 1000)
        print(f"{k:>5} {requests_made:>18} {wall * 1000:>9.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        result = latencies(args.runs, Path(tmp))
    print(f"\ncatalog latency, median of {args.runs} runs (FakeProvider latency 0, sqlite cache, 50 models):")
    print(f"  uncached (refresh=True, loopback fetch): {result['uncached']:.3f} ms")
    print(f"  requests-cache hit (sqlite, no upstream): {result['http_cache']:.3f} ms")
    print(f"  in-memory hit (catalog() within expire_after): {result['memory']:.4f} ms")
    print(f"  ratio uncached / sqlite hit: {result['uncached'] / result['http_cache']:.1f}x; "
          f"uncached / memory hit: {result['uncached'] / result['memory']:.0f}x")


if __name__ == "__main__":
    main()
