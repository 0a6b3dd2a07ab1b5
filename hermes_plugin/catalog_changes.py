"""What each provider's latest refresh changed: models added and removed, and when (for the status page)."""

from __future__ import annotations

import threading
import time
from typing import Any


class CatalogChanges:
    """Subscribed to a ``CatalogService``: keeps, per provider, the ids it last settled on and the latest diff."""

    def __init__(self, catalog: Any) -> None:
        self._lock = threading.Lock()
        self._ids: dict[str, frozenset[str]] = {}
        self._diffs: dict[str, dict[str, Any]] = {}
        self._refreshed: dict[str, float] = {}
        catalog.subscribe(self.seen)

    def seen(self, snapshot: Any) -> None:
        """A settled catalog: the diff against the previous settled one becomes "changes since the last refresh"."""
        if snapshot.state == "pending":
            return
        ids = frozenset(snapshot.ids)
        now = time.time()
        with self._lock:
            before = self._ids.get(snapshot.id)
            self._ids[snapshot.id] = ids
            self._refreshed[snapshot.id] = now
            if before is not None:
                self._diffs[snapshot.id] = {"added": sorted(ids - before), "removed": sorted(before - ids), "at": now}

    def since_last_refresh(self, provider: str) -> dict[str, Any] | None:
        """``{"added", "removed", "at", "first"}`` of the latest refresh; None before the first one settled.

        After the first settled fetch (``first``) nothing is "changed": there is nothing to compare with.
        """
        with self._lock:
            diff = self._diffs.get(provider)
            if diff is None:
                at = self._refreshed.get(provider)
                return None if at is None else {"added": [], "removed": [], "at": at, "first": True}
            return {**diff, "added": list(diff["added"]), "removed": list(diff["removed"]), "first": False}
