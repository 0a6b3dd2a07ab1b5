"""The pure parts of the server guard: the decision table, versions, the audit log, locks, dotted paths."""

from __future__ import annotations

import threading

import pytest

from hermes_plugin import jsonpath
from hermes_plugin.writeguard import AuditLog, Decision, SessionLocks, VersionMap, decide, needs_availability

# Every row of DESIGN.md §5 (the If-Match row is covered in test_extension.py).
TABLE = [
    # stored, proposed, intent, availability, outcome, reason
    ("m", "m", "auto", None, "pass", "same"),
    ("m", "m", "user", None, "pass", "same"),
    ("m", None, "auto", None, "pass", "same"),
    (None, "p", "auto", None, "pass", "no_stored_model"),
    ("m", "p", "user", None, "pass", "user"),
    ("m", "p", "user", "present", "pass", "user"),
    ("m", "p", "auto", "present", "keep", "model_present"),
    ("m", "p", "auto", "unknown", "keep", "catalog_unknown"),
    ("m", "p", "auto", None, "keep", "catalog_unknown"),
    ("m", "p", "auto", "absent", "fallback", "model_absent"),
]


@pytest.mark.parametrize(("stored", "proposed", "intent", "availability", "outcome", "reason"), TABLE)
def test_decision_table(stored, proposed, intent, availability, outcome, reason):
    decision = decide(stored, proposed, intent, availability, session="s1")
    assert (decision.outcome, decision.reason) == (outcome, reason)
    assert (decision.session, decision.stored, decision.proposed, decision.intent) == ("s1", stored, proposed, intent)


@pytest.mark.parametrize(("availability", "reason"), [("present", "model_present"), ("unknown", "catalog_unknown")])
def test_reject_policy_turns_keep_into_reject(availability, reason):
    decision = decide("m", "p", "auto", availability, on_keep="reject")
    assert (decision.outcome, decision.reason) == ("reject", reason)
    assert decide("m", "p", "auto", "absent", on_keep="reject").outcome == "fallback"
    assert decide("m", "p", "user", "present", on_keep="reject").outcome == "pass"


def test_only_auto_replacements_need_the_catalog():
    assert needs_availability("m", "p", "auto")
    assert not needs_availability("m", "p", "user")
    assert not needs_availability("m", "m", "auto")
    assert not needs_availability(None, "p", "auto")
    assert not needs_availability("m", None, "auto")


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="intent"):
        decide("m", "p", "robot", "present")
    with pytest.raises(ValueError, match="on_keep"):
        decide("m", "p", "auto", "present", on_keep="ignore")


def test_changes_model():
    assert decide("m", "p", "user", None).changes_model
    assert decide("m", "p", "auto", "absent").changes_model
    assert not decide("m", "p", "auto", "present").changes_model
    assert not decide("m", "m", "auto", None).changes_model
    assert decide("m", "p", "user", None).to_json()["outcome"] == "pass"


def test_versions_start_at_one_and_bump():
    versions = VersionMap(10)
    assert versions.current("a") == 1
    assert versions.bump("a") == 2
    assert versions.current("a") == 2
    assert versions.current("b") == 1


@pytest.mark.parametrize(("header", "ok"), [('"2"', True), ("2", True), ('W/"2"', True), ("*", True),
                                            ('"1", "2"', True), ('"1"', False), ("garbage", False), ("", False)])
def test_if_match(header, ok):
    versions = VersionMap(10)
    versions.bump("a")
    assert versions.matches("a", header) is ok


def test_versions_are_bounded_lru():
    versions = VersionMap(2)
    versions.bump("a")
    versions.bump("b")
    versions.current("a")  # a is now the most recent
    versions.bump("c")
    assert len(versions) == 2
    assert versions.current("a") == 2
    assert versions.current("b") == 1  # forgotten: starts again (a stale If-Match then gets 412, never a lost update)


def test_versions_thread_safe():
    versions = VersionMap(10)
    threads = [threading.Thread(target=lambda: [versions.bump("s") for _ in range(200)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert versions.current("s") == 1 + 8 * 200


def test_audit_entries_and_bounds():
    audit = AuditLog(per_session=3, max_sessions=2)
    for index in range(5):
        audit.record(Decision("pass", "user", session="a", stored=f"m{index}", proposed=f"m{index + 1}"),
                     f"m{index + 1}", at=float(index))
    entries = audit.entries("a")
    assert [entry["new"] for entry in entries] == ["m3", "m4", "m5"]
    assert entries[-1] == {"time": 4.0, "old": "m4", "new": "m5", "proposed": "m5", "intent": "user",
                           "outcome": "pass", "reason": "user"}
    audit.record(Decision("keep", "model_present", session="b", stored="x", proposed="y", intent="auto"), "x")
    audit.record(Decision("pass", "user", session="c", stored="x", proposed="y"), "y")
    assert audit.entries("a") == []  # the least recently used session went
    assert len(audit) == 2
    assert audit.entries("b")[0]["outcome"] == "keep"
    with pytest.raises(ValueError):
        audit.record(Decision("pass", "same"), None)


def test_session_locks_serialise_one_session_and_free_memory():
    locks = SessionLocks()
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def first() -> None:
        with locks.hold("s"):
            inside.set()
            release.wait()
            order.append("first")

    def second() -> None:
        with locks.hold("s"):
            order.append("second")

    t1 = threading.Thread(target=first)
    t1.start()
    inside.wait()
    t2 = threading.Thread(target=second)
    t2.start()
    with locks.hold("other"):  # another session is not blocked
        order.append("other")
    release.set()
    t1.join()
    t2.join()
    assert order == ["other", "first", "second"]
    assert len(locks) == 0


def test_jsonpath_get_and_set():
    body = {"session": {"id": "s", "model": "m"}, "model": "top"}
    assert jsonpath.get(body, "model") == "top"
    assert jsonpath.get(body, "session.model") == "m"
    assert jsonpath.get(body, "session.nope") is jsonpath.MISSING
    with pytest.raises(jsonpath.PathError):
        jsonpath.get({"session": "x"}, "session.model")
    with pytest.raises(jsonpath.PathError):
        jsonpath.get(body, "models[].id")
    jsonpath.set_value(body, "session.model", "kept")
    assert body["session"]["model"] == "kept"


@pytest.mark.parametrize("bad", ["", "a..b", "a[0]", "a[]]", None, 3])
def test_jsonpath_rejects_bad_paths(bad):
    with pytest.raises(jsonpath.PathError):
        jsonpath.parse(bad)


def test_jsonpath_extract_and_grouped():
    doc = {"models": [{"id": "a"}, {"id": 2}, "junk", {"name": "x"}], "groups": [
        {"provider": "p1", "models": [{"id": "x"}, {"id": "y"}]},
        {"provider": "p2", "models": [{"id": "z"}]},
        {"models": [{"id": "orphan"}]},
        "junk",
    ]}
    assert jsonpath.extract(doc, "models[].id") == ["a", 2]
    assert jsonpath.extract(doc, "nothing[].id") == []
    assert jsonpath.grouped(doc, "groups[].provider", "groups[].models[].id") == [
        ("p1", ["x", "y"]), ("p2", ["z"]), (None, ["orphan"]), (None, [])]
    assert jsonpath.grouped({"provider": "p", "models": ["a", "b"]}, "provider", "models[]") == [("p", ["a", "b"])]
    assert jsonpath.extract(["a", "b"], "[]") == ["a", "b"]
