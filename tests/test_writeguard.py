"""The pure parts of the server guard: the decision table, in-process locks, dotted paths (stores: test_state.py)."""

from __future__ import annotations

import threading

import pytest

from hermes_plugin import jsonpath
from hermes_plugin.state.memory import NamedLocks
from hermes_plugin.writeguard import absent_policy, check_absent_policies, decide, decide_models, needs_availability

# Every row of the decision table in docs/host-guide.md (the If-Match row is covered in test_extension.py).
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


def test_session_locks_serialise_one_session_and_free_memory():
    locks = NamedLocks()
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


# The absent-model policy, both ways: only the plain "absent" row changes; the cost guard and the retirement
# map answer first; user picks and everything not confirmed absent are untouched.
ABSENT_TABLE = [
    # absent policy, intent, availability, replacement, price ratio, on_keep, outcome, reason
    ("fallback", "auto", "absent", None, None, "keep", "fallback", "model_absent"),
    ("keep", "auto", "absent", None, None, "keep", "keep", "model_absent_kept"),
    ("keep", "auto", "absent", None, None, "reject", "reject", "model_absent_kept"),
    ("keep", "auto", "absent", None, 0.5, "keep", "keep", "model_absent_kept"),
    ("keep", "auto", "absent", None, 3.0, "keep", "reject", "price_increase"),
    ("fallback", "auto", "absent", None, 3.0, "keep", "reject", "price_increase"),
    ("keep", "auto", "absent", "m2", None, "keep", "keep", "replacement_suggested"),
    ("fallback", "auto", "absent", "m2", None, "keep", "keep", "replacement_suggested"),
    ("keep", "user", None, None, None, "keep", "pass", "user"),
    ("keep", "auto", "present", None, None, "keep", "keep", "model_present"),
    ("keep", "auto", "unknown", None, None, "keep", "keep", "catalog_unknown"),
]


@pytest.mark.parametrize(("absent", "intent", "availability", "replacement", "price_ratio", "on_keep", "outcome",
                          "reason"), ABSENT_TABLE)
def test_absent_model_policy(absent, intent, availability, replacement, price_ratio, on_keep, outcome, reason):
    decision = decide("preview-1", "default-1", intent, availability, on_keep, "s1", replacement=replacement,
                      price_ratio=price_ratio, absent=absent)
    assert (decision.outcome, decision.reason) == (outcome, reason)
    assert decision.changes_model == (outcome in ("pass", "fallback"))


def test_absent_model_policy_is_checked_and_reaches_lists():
    with pytest.raises(ValueError, match="absent"):
        decide("m", "p", "auto", "absent", absent="ignore")
    gone = lambda model: "absent"  # noqa: E731
    kept, models = decide_models(("m",), ("p",), "auto", gone, absent="keep")
    assert (kept.outcome, kept.reason, models) == ("keep", "model_absent_kept", ("m",))
    # A list of another length is judged whole: the policy reaches that row too.
    whole, models = decide_models(("m", "n"), ("p",), "auto", gone, absent="keep")
    assert (whole.outcome, whole.reason, models) == ("keep", "model_absent_kept", ("m", "n"))
    fell, models = decide_models(("m", "n"), ("p",), "auto", gone)
    assert (fell.outcome, fell.reason, models) == ("fallback", "model_absent", None)


def test_absent_policy_per_provider_the_stored_id_names():
    overrides = {"custom": "keep", "openai": "fallback"}
    assert absent_policy("custom:acme/preview-1", "fallback", overrides) == "keep"
    assert absent_policy("openai/gpt-x-preview", "keep", overrides) == "fallback"
    assert absent_policy("nova-3-preview", "fallback", overrides) == "fallback"  # names no provider
    assert absent_policy("customer:x", "fallback", overrides) == "fallback"  # a whole prefix, not a part of one
    assert check_absent_policies({"custom": "keep"}, "t") == {"custom": "keep"}
    for bad in ({"custom": "drop"}, {"": "keep"}, ["custom"]):
        with pytest.raises(ValueError, match="t"):
            check_absent_policies(bad, "t")
