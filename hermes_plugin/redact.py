"""Keep configured secrets out of every text the plugin shows: API responses, logs, CLI output, the audit log.

A provider (or a proxy in front of it) may echo a credential back in a header or an error body, whole or
cut short; so each secret is removed in full and wherever a prefix of it of ``MIN_PREFIX`` or more
characters appears, before any text is clipped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

MIN_PREFIX = 8  # a shorter run is too likely to be a coincidence (and too short to help an attacker)
MIN_SECRET = 4  # shorter values (e.g. "1") are not redacted whole: they would shred every text
MASK = "***"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def source_secrets(source: Any) -> list[str]:
    """Every secret a declared live source may send: its key variable's value, header values, URL userinfo."""
    found: list[str] = []
    env_name = getattr(source, "api_key_env", None)
    if isinstance(env_name, str) and env_name:
        found.append(os.environ.get(env_name, "").strip())
    headers = getattr(source, "headers", None)
    if isinstance(headers, Mapping):
        for value in headers.values():
            if isinstance(value, str):
                found.append(value.strip())
                found.extend(value.split(None, 1)[1:])  # "Bearer <token>": the token alone too
    base_url = getattr(source, "base_url", None)
    if isinstance(base_url, str):
        found.extend(url_secrets(base_url))
    return [secret for secret in found if len(secret) >= MIN_SECRET]


def url_secrets(url: str) -> list[str]:
    """The userinfo of a URL (user, password, both), raw and decoded."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    userinfo = parts.netloc.rpartition("@")[0]
    if not userinfo:
        return []
    values = {userinfo, unquote(userinfo)}
    for piece in userinfo.split(":", 1):
        values.update({piece, unquote(piece)})
    return [value for value in values if len(value) >= MIN_SECRET]


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret, and every run of ``MIN_PREFIX``+ characters that starts one, masked."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) < MIN_SECRET:
            continue
        text = text.replace(secret, MASK)
        if len(secret) < MIN_PREFIX:
            continue
        head, start = secret[:MIN_PREFIX], 0
        while (at := text.find(head, start)) != -1:
            end = at + MIN_PREFIX
            while end - at < len(secret) and end < len(text) and text[end] == secret[end - at]:
                end += 1
            text = text[:at] + MASK + text[end:]
            start = at + len(MASK)
    return text


def contains_secret(text: str, secrets: Iterable[str]) -> bool:
    return redact(text, secrets) != text


def printable(text: str) -> str:
    """Control characters (terminal escapes, newlines that forge log lines) shown as ``\\xNN``."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
