"""Path quoting exactly as git prints it: `quote_c_style` and the numstat rename form."""

from __future__ import annotations

import re

_UNSAFE_FULL = re.compile(rb'[\x00-\x1f\x7f"\\\x80-\xff]')
_UNSAFE_ASCII = re.compile(rb'[\x00-\x1f\x7f"\\]')
_NAMED = {0x07: b"\\a", 0x08: b"\\b", 0x09: b"\\t", 0x0A: b"\\n", 0x0B: b"\\v", 0x0C: b"\\f"}
_NAMED |= {0x0D: b"\\r", 0x22: b'\\"', 0x5C: b"\\\\"}


def _unsafe(quote_fully: bool) -> re.Pattern[bytes]:
    return _UNSAFE_FULL if quote_fully else _UNSAFE_ASCII


def _escape(match: re.Match[bytes]) -> bytes:
    byte = match.group()[0]
    return _NAMED.get(byte) or b"\\%03o" % byte


def needs_quote(path: bytes, quote_fully: bool = True) -> bool:
    return _unsafe(quote_fully).search(path) is not None


def quote_bytes(path: bytes, quote_fully: bool = True) -> bytes:
    """`path` C-quoted in double quotes when git would quote it (core.quotePath = quote_fully)."""
    pattern = _unsafe(quote_fully)
    if pattern.search(path) is None:
        return path
    return b'"' + pattern.sub(_escape, path) + b'"'


def quote_path(path: bytes, quote_fully: bool = True) -> str:
    return quote_bytes(path, quote_fully).decode("utf-8", "surrogateescape")


def pprint_rename(old: bytes, new: bytes, quote_fully: bool = True) -> str:
    """A rename as `git diff --numstat` prints it: `a => b`, `dir/{a => b}/f`, `"a" => "b"`."""
    if needs_quote(old, quote_fully) or needs_quote(new, quote_fully):
        return f"{quote_path(old, quote_fully)} => {quote_path(new, quote_fully)}"
    len_a, len_b = len(old), len(new)
    prefix = 0
    i = 0
    while i < len_a and i < len_b and old[i] == new[i]:
        if old[i] == 0x2F:
            prefix = i + 1
        i += 1
    # Walk back from the terminating NULs; with a prefix, one step into it to see its slash.
    a, b = old + b"\0", new + b"\0"
    floor = prefix - 1 if prefix else 0
    suffix = 0
    ia, ib = len_a, len_b
    while ia >= floor and ib >= floor and a[ia] == b[ib]:
        if a[ia] == 0x2F:
            suffix = len_a - ia
        ia -= 1
        ib -= 1
    mid_a = max(len_a - prefix - suffix, 0)
    mid_b = max(len_b - prefix - suffix, 0)
    text = old[prefix : prefix + mid_a] + b" => " + new[prefix : prefix + mid_b]
    if prefix + suffix:
        text = old[:prefix] + b"{" + text + b"}" + old[len_a - suffix :]
    return text.decode("utf-8", "surrogateescape")
