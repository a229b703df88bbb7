"""JSON from strangers, parsed without risking the process.

Importing py-evm / py_ecc raises Python's recursion limit to 100,000, so the C JSON parser no longer stops
at depth 1,000 with ``RecursionError``: ``'[' * 80000 + ']' * 80000`` (160 KB) overflows the C stack and
kills the process with SIGSEGV. Everything that parses JSON from another party (request bodies on the
bridge, a bridge's answers in the auditor and the attestor) goes through :func:`loads`, which refuses
nesting deeper than ``max_depth`` *before* the recursive parser sees it.

The depth check runs in C at a few ms per MB, whatever the input: strings are cut out with one regex, the
brackets left are mapped onto one kind, and the result must be a balanced bracket word of depth
≤ ``max_depth``, matched by a possessive regex (one pass, no backtracking). For well-formed JSON this is
exactly its nesting depth; malformed input that is not balanced is refused here as malformed, before the
parser could recurse into it.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

MAX_DEPTH = 64
"""Deepest nesting accepted (every JSON document of this protocol is at most 5 deep)."""

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_ONE_KIND = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


class JsonRefused(ValueError):
    """The document is not JSON (``reason`` = "malformed") or nests deeper than allowed ("too_deep")."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@lru_cache(maxsize=8)
def _balanced(max_depth: int) -> re.Pattern[bytes]:
    pattern = b""
    for _ in range(max_depth):
        pattern = rb"(?:\[" + pattern + rb"\])*+"
    return re.compile(pattern)


def _brackets(raw: bytes) -> bytes:
    return _STRING.sub(b"", raw).translate(_ONE_KIND, _NOT_BRACKET)


def depth_ok(raw: bytes | str, max_depth: int = MAX_DEPTH) -> bool:
    """True when ``raw``'s brackets (outside strings) are balanced and nest at most ``max_depth`` deep."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    return _balanced(max_depth).fullmatch(_brackets(data)) is not None


def check(raw: bytes | str, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`JsonRefused` unless ``raw`` may be handed to a recursive JSON parser safely."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    brackets = _brackets(data)
    balanced = _balanced(max_depth).match(brackets)
    end = balanced.end() if balanced else 0
    if end == len(brackets):
        return
    # Name the fault from a bounded window after the longest balanced prefix (depth 0 there): a cheap
    # diagnosis, never a scan of the whole input in Python.
    depth = 0
    for ch in brackets[end : end + _DIAGNOSIS_WINDOW]:
        depth += 1 if ch == 0x5B else -1
        if depth > max_depth:
            raise JsonRefused("too_deep", f"JSON nested deeper than {max_depth} levels")
        if depth < 0:
            break
    raise JsonRefused("malformed", f"the body is not JSON (unbalanced brackets, or nested deeper than {max_depth} levels)")


_DIAGNOSIS_WINDOW = 4096


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` for input from another party: :class:`JsonRefused` for anything that is not JSON or
    nests deeper than ``max_depth``."""
    check(raw, max_depth)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise JsonRefused("malformed", f"the body is not JSON: {e}") from e
