"""The relay's answer parser on raw bytes: the header block as the upstream wrote it, read the way http.client would."""

from __future__ import annotations

import socket

import pytest

from hermes_plugin.proxy.upstream import Answer


def answer_to(raw: bytes, method: str = "GET") -> Answer:
    ours, theirs = socket.socketpair()
    with theirs:
        theirs.sendall(raw)
    answer = Answer(ours, method=method)
    answer.begin()
    ours.close()  # the answer reads from its own file object from now on
    return answer


def test_fields_keep_order_repeats_and_folded_lines() -> None:
    answer = answer_to(b"HTTP/1.1 200 OK\r\nX-One: a\r\nSet-Cookie: s=1\r\nX-Fold: first\r\n  second\r\n"
                       b"Set-Cookie: t=2\r\nContent-Length: 2\r\n\r\nok")
    assert answer.fields == [("X-One", "a"), ("Set-Cookie", "s=1"), ("X-Fold", "first second"),
                             ("Set-Cookie", "t=2"), ("Content-Length", "2")]
    assert answer.getheader("set-cookie") == "s=1, t=2" and answer.getheader("X-Missing", "-") == "-"
    assert answer.read() == b"ok"


def test_the_standard_message_is_built_only_when_asked_and_then_matches_the_fields() -> None:
    answer = answer_to(b"HTTP/1.1 200 OK\r\nX-One: a\r\nX-Two: b\r\nX-Two: c\r\nContent-Length: 0\r\n\r\n")
    assert answer._message is None  # the relay reads ``fields``; nothing built the email-package message
    message = answer.info()
    assert message is answer.headers is answer.msg
    assert message.get_all("X-Two") == ["b", "c"] and answer.getheaders()[0] == ("X-One", "a")


@pytest.mark.parametrize(("lengths", "framed"), [((b"2",), 2), ((b"2", b"2"), 2), ((b"2", b"5"), None),
                                                 ((b"-1",), None), ((b"2x",), None)])
def test_a_length_frames_the_body_only_when_it_is_one_number(lengths: tuple[bytes, ...], framed: int | None) -> None:
    head = b"".join(b"Content-Length: %b\r\n" % value for value in lengths)
    answer = answer_to(b"HTTP/1.1 200 OK\r\n" + head + b"\r\nok")
    assert answer.declared_length() == framed and answer.length == framed
    assert answer.will_close is (framed is None)  # an unframed body ends when the upstream closes
    assert answer.read() == b"ok"


def test_an_interim_continue_is_skipped() -> None:
    answer = answer_to(b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    assert answer.status == 201 and answer.fields == [("Content-Length", "0")]


def test_a_header_line_without_a_colon_is_a_clear_error() -> None:
    with pytest.raises(Exception, match="malformed header line"):
        answer_to(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n")
