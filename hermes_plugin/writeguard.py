"""The server-side write guard: the decision table, session versions and the audit log.

Everything here is plain Python with no Flask: ``extension.py`` feeds it what a request carries, and
versions and the log live in a ``StateStore`` that every worker shares.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .state import StateStore, model_digest

Outcome = Literal["pass", "keep", "reject", "fallback", "default"]
Intent = Literal["user", "auto"]
INTENTS = ("user", "auto")
ON_KEEP = ("keep", "reject")
NEW_SESSION_POLICIES = ("default", "inherit")
ABSENT_POLICIES = ("fallback", "keep")  # what an automatic write does to a stored model no catalogue lists


@dataclass(frozen=True)
class Decision:
    """What the guard decided for one write proposing ``proposed`` where ``stored`` is saved."""

    outcome: Outcome
    # same | user | no_stored_model | model_present | catalog_unknown | model_absent | model_absent_kept |
    # replacement_suggested | price_increase | new_session_default | undo | replacement | price_accepted | pick
    # (the last four: the plugin's own set API)
    # | model_unservable | fields_differ (a reject after a keep: the host cannot serve it, the fields cannot say it)
    reason: str
    session: str | None = None
    stored: str | None = None
    proposed: str | None = None
    intent: Intent = "user"
    availability: str | None = None  # of the stored model: present | absent | unknown (None when not asked)
    replacement: str | None = None  # the retirement map's suggestion for an absent stored model
    price_ratio: float | None = None  # proposed model's price / stored model's, when both are known
    default_model: str | None = None  # what a new session was given instead of the proposal ("default" outcome)

    @property
    def changes_model(self) -> bool:
        """True when the view may store ``proposed`` (pass/fallback with a different model)."""
        return self.outcome in ("pass", "fallback") and self.proposed is not None and self.proposed != self.stored

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def needs_availability(stored: str | None, proposed: str | None, intent: str) -> bool:
    """Only an automatic write that would replace a stored model depends on the catalog."""
    return intent == "auto" and stored is not None and proposed is not None and proposed != stored


def decide(stored: str | None, proposed: str | None, intent: str, availability: str | None,
           on_keep: str = "keep", session: str | None = None, *, replacement: str | None = None,
           price_ratio: float | None = None, max_price_ratio: float = 1.0, absent: str = "fallback") -> Decision:
    """The decision table (the If-Match row is checked by the caller before this).

    An automatic write replacing a confirmed-absent model is refused when it raises the price by more than
    ``max_price_ratio``, and kept when the retirement map has a suggestion: the user answers, not the page.
    Otherwise ``absent`` decides: ``fallback`` lets the page's model through, ``keep`` keeps the stored one
    (a preview or custom model the host still serves though no catalogue lists it).
    """
    if intent not in INTENTS:
        raise ValueError(f"intent must be one of {INTENTS}, got {intent!r}")
    if on_keep not in ON_KEEP:
        raise ValueError(f"on_keep must be one of {ON_KEEP}, got {on_keep!r}")
    if absent not in ABSENT_POLICIES:
        raise ValueError(f"absent must be one of {ABSENT_POLICIES}, got {absent!r}")
    common = {"session": session, "stored": stored, "proposed": proposed, "intent": intent}
    kept: Outcome = "keep" if on_keep == "keep" else "reject"  # how the stored model is kept, where it is
    if proposed is None or proposed == stored:
        return Decision("pass", "same", availability=availability, **common)  # type: ignore[arg-type]
    if stored is None:
        return Decision("pass", "no_stored_model", availability=availability, **common)  # type: ignore[arg-type]
    if intent == "user":
        return Decision("pass", "user", availability=availability, **common)  # type: ignore[arg-type]
    if availability == "absent":
        extra = {"availability": availability, "replacement": replacement, "price_ratio": price_ratio}
        if price_ratio is not None and price_ratio > max_price_ratio:
            return Decision("reject", "price_increase", **extra, **common)  # type: ignore[arg-type]
        if replacement is not None or absent == "keep":
            reason = "replacement_suggested" if replacement is not None else "model_absent_kept"
            return Decision(kept, reason, **extra, **common)  # type: ignore[arg-type]
        return Decision("fallback", "model_absent", **extra, **common)  # type: ignore[arg-type]
    # Anything but a confirmed absence keeps the stored model: "unknown" must never rewrite a session.
    reason = "model_present" if availability == "present" else "catalog_unknown"
    return Decision(kept, reason, availability=availability or "unknown", **common)  # type: ignore[arg-type]


def absent_policy(model: str, default: str, by_provider: Mapping[str, str]) -> str:
    """The absent-model policy for a stored id: the override of the provider its id names as a prefix
    (``custom:acme/x`` names ``custom``, ``openai/gpt-x`` names ``openai``), else ``default``."""
    for separator in (":", "/"):
        prefix, found, _ = model.partition(separator)
        if found and prefix in by_provider:
            return by_provider[prefix]
    return default


def check_absent_policies(table: Any, where: str) -> dict[str, str]:
    """A ``{provider id: "fallback" | "keep"}`` table; ValueError naming the bad entry."""
    if not isinstance(table, Mapping):
        raise ValueError(f"{where} must be a table of provider id -> one of {ABSENT_POLICIES}")
    for provider, policy in table.items():
        if not isinstance(provider, str) or not provider or policy not in ABSENT_POLICIES:
            raise ValueError(f"{where}: {str(provider)[:100]!r} -> {str(policy)[:100]!r}: the provider must be a "
                             f"non-empty id and the policy one of {ABSENT_POLICIES}")
    return dict(table)


def decide_new_session(proposed: str | None, intent: str, default: str | None, policy: str = "default") -> Decision:
    """A write that creates a session (nothing stored yet): under the ``default`` policy an automatic
    proposal (the page's leftover picker value) gives way to the host's default model; a user's pick passes."""
    if policy not in NEW_SESSION_POLICIES:
        raise ValueError(f"policy must be one of {NEW_SESSION_POLICIES}, got {policy!r}")
    common = {"stored": None, "proposed": proposed, "intent": intent}
    if policy == "default" and intent == "auto" and default and proposed is not None and proposed != default:
        return Decision("default", "new_session_default", default_model=default, **common)  # type: ignore[arg-type]
    reason = "same" if proposed is None else "no_stored_model"
    return Decision("pass", reason, **common)  # type: ignore[arg-type]


def actor(decision: Decision) -> str:
    """Who made the change: ``user`` (a pick or an answer), ``page`` (an automatic write let through) or
    ``server`` (the guard kept or refused the page's proposal)."""
    if decision.outcome in ("keep", "reject", "default"):  # "default": a new session given the host's default
        return "server"
    return "user" if decision.intent == "user" else "page"


def last_change(entries: list[dict[str, Any]], current: str | None) -> dict[str, Any] | None:
    """The newest log entry that changed the model to ``current``: what an undo reverts."""
    for entry in reversed(entries):
        if entry.get("new") != entry.get("old"):
            return entry if entry.get("new") == current else None
    return None


STRENGTH = {"pass": 0, "fallback": 1, "keep": 2, "reject": 3}


def decide_models(stored: tuple[str, ...] | None, proposed: tuple[str, ...] | None, intent: str,
                  availability: Callable[[str], str], on_keep: str = "keep", session: str | None = None,
                  decide_entry: Callable[[str | None, str | None], Decision] | None = None,
                  absent: str = "fallback") -> tuple[Decision, tuple[str, ...] | None]:
    """The decision table per entry of a model list, and the list to forward when the decision is keep.

    One model is the plain table. Lists of one length are judged entry by entry (the strongest outcome
    answers for the write, the entries kept go back to their stored model); a list of another length is
    judged whole, since no entry lines up with a stored one. ``decide_entry(stored, proposed)`` decides
    one model (the host's full table: availability, replacements, prices); by default the plain table.
    """
    if decide_entry is None:
        def decide_entry(old: str | None, new: str | None) -> Decision:
            asked = availability(old) if old and needs_availability(old, new, intent) else None
            return decide(old, new, intent, asked, on_keep, session, absent=absent)
    if stored and proposed and len(stored) != len(proposed):
        one_stored, one_proposed = _list_name(stored), _list_name(proposed)
        asked = needs_availability(one_stored, one_proposed, intent)
        availability_of = _whole_availability(stored, proposed, availability) if asked else None
        decision = decide(one_stored, one_proposed, intent, availability_of, on_keep, session, absent=absent)
        return decision, (stored if decision.outcome == "keep" else None)
    if not stored or not proposed or len(stored) == 1:
        decision = decide_entry(stored[0] if stored else None, proposed[0] if proposed else None)
        return decision, (stored if decision.outcome == "keep" and stored else None)
    decisions = [decide_entry(old, new) for old, new in zip(stored, proposed, strict=True)]
    strongest = max(decisions, key=lambda d: STRENGTH[d.outcome])
    if strongest.outcome != "keep":
        return strongest, None
    return strongest, tuple(d.stored if d.outcome == "keep" else d.proposed for d in decisions)  # type: ignore[misc]


def _list_name(models: tuple[str, ...]) -> str:
    """A model list as one text for the log and the headers: ``a, b``."""
    return ", ".join(models)


def _whole_availability(stored: tuple[str, ...] | None, proposed: tuple[str, ...] | None,
                        availability: Callable[[str], str]) -> str:
    """A whole list is gone only when every stored entry the write drops is confirmed absent."""
    dropped = [model for model in stored or () if model not in (proposed or ())]
    verdicts = [availability(model) for model in dropped] or ["present"]
    if all(verdict == "absent" for verdict in verdicts):
        return "absent"
    return "unknown" if "unknown" in verdicts else "present"


class Versions:
    """Session versions kept in the shared store, each tied to a digest of the model it was given for.

    A version changes exactly when the stored model does (or the host's own version of the session, when it
    declares one): a record whose digest no longer matches what the host stores (a write outside the
    guard, or one in flight) is moved on under the session's lock.
    Only sessions that exist get a record, so reading made-up session ids cannot push a real one out.
    """

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def peek(self, session: str, model: str | None, host_version: str | None = None) -> int | None:
        """The version for ``model`` without writing, or None when the record must be brought up to date."""
        record = self.store.get_version(session)
        if record is None:
            return 1 if model is None else None
        return record[0] if record[1] == model_digest(model, host_version) else None

    def current(self, session: str, model: str | None, host_version: str | None = None) -> int:
        """The version of ``model`` (and the host's version) as stored; the caller holds the session's lock."""
        version, record = self.next(session, model, host_version)
        if record is not None:
            self.store.set_version(session, *record)
        return version

    def next(self, session: str, model: str | None, host_version: str | None = None
             ) -> tuple[int, tuple[int, str] | None]:
        """``(version, record to store or None)`` for ``model`` as the stored model; writes nothing."""
        record = self.store.get_version(session)
        digest = model_digest(model, host_version)
        if record is None:
            return 1, ((1, digest) if model is not None else None)
        if record[1] == digest:
            return record[0], None
        return record[0] + 1, (record[0] + 1, digest)

    @staticmethod
    def matches(if_match: str, version: int) -> bool:
        """RFC 9110 If-Match against a version: ``*`` or any listed ETag (weak or strong)."""
        for tag in if_match.split(","):
            tag = tag.strip()
            if tag == "*":
                return True
            if tag.removeprefix("W/").strip('"') == str(version):
                return True
        return False


class AuditLog:
    """Model changes (and kept/rejected proposals) per session, bounded per session and in total."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    @property
    def per_session(self) -> int:
        return self.store.audit_per_session

    def record(self, decision: Decision, new: str | None, at: float | None = None) -> dict[str, Any]:
        """Append what happened to ``decision.session``'s model: ``new`` is the model stored afterwards."""
        entry = self.entry(decision, new, at)
        self.store.audit_append(str(decision.session), entry)
        return entry

    @staticmethod
    def entry(decision: Decision, new: str | None, at: float | None = None) -> dict[str, Any]:
        """The log entry for ``decision`` (not yet stored): what changed, who (``by``) and why (``reason``)."""
        if decision.session is None:
            raise ValueError("cannot audit a write without a session")
        entry = {
            "time": time.time() if at is None else at,
            "old": decision.stored,
            "new": new,
            "proposed": decision.proposed,
            "intent": decision.intent,
            "outcome": decision.outcome,
            "reason": decision.reason,
            "by": actor(decision),
        }
        if decision.replacement is not None:
            entry["replacement"] = decision.replacement
        if decision.price_ratio is not None:
            entry["price_ratio"] = round(decision.price_ratio, 4) if decision.price_ratio != float("inf") else None
        return entry

    def entries(self, session: str) -> list[dict[str, Any]]:
        """Oldest first; an unknown session has none."""
        return self.store.audit_entries(session)
