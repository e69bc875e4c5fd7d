"""Bounds on JSON that comes from outside: depth, size, element count and value types.

Why iterative: Python's ``json``, ``pickle``, ``repr`` and ``copy`` all recurse, and a list
nested a few hundred deep (about 1 KB) makes each of them raise ``RecursionError`` (or, deeper
still, overflow the C stack). Every check here walks with an explicit stack, so it is safe on
any input, including a 100,000-deep one, and it stops at the first bound exceeded instead of
walking a huge value to the end.

Two entry points: :func:`check_value` for decoded values (a workflow handed to the client, a
task argument), and :func:`raw_json_depth` for JSON text not decoded yet (a task message in the
worker's main process, a file read by the CLI), which must be judged *before* a recursive
decoder sees it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["JSONBounds", "JSONBoundsError", "check_value", "raw_json_depth"]

#: JSON strings (with escapes), removed before brackets are counted in raw text
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


@dataclass(frozen=True)
class JSONBounds:
    """The limits a value must stay within (defaults sized for ComfyUI API workflows)."""

    #: containers nested inside each other, the outermost counting 1
    max_depth: int = 32
    #: values of every kind (containers, keys excluded), all levels together
    max_items: int = 1_000_000
    #: the sum of string lengths (keys included), a lower bound on the encoded size
    max_string_chars: int = 8 * 1024 * 1024
    #: integers beyond this magnitude are refused (ComfyUI seeds go up to 2**64 - 1)
    max_int: int = 2**64


class JSONBoundsError(ValueError):
    """A bound was exceeded or a value is not JSON; ``kind`` names which (for error details)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def _scalar_problem(value: Any, bounds: JSONBounds) -> tuple[str, str] | None:
    """None for an acceptable scalar, else (kind, message)."""
    if value is None or isinstance(value, bool | str):
        return None
    if isinstance(value, int):
        return None if -bounds.max_int <= value <= bounds.max_int else ("int_too_large", "an integer is out of range")
    if isinstance(value, float):
        return None if math.isfinite(value) else ("not_finite", "NaN and infinity are not JSON")
    return ("bad_type", f"a value of type {type(value).__name__} is not JSON")


def check_value(value: Any, bounds: JSONBounds | None = None, *, where: str = "the value") -> int:
    """Raise :class:`JSONBoundsError` unless ``value`` is plain JSON within ``bounds``; return its item count.

    Accepted: dict (string keys), list, tuple, str, int, float (finite), bool, None. A cycle
    (possible in a value built in Python) is caught by the depth bound.
    """
    bounds = bounds or JSONBounds()
    stack: list[tuple[Any, int]] = [(value, 1)]
    items = 0
    chars = 0
    while stack:
        current, depth = stack.pop()
        items += 1
        if items > bounds.max_items:
            raise JSONBoundsError(f"{where} has more than {bounds.max_items} values", "too_many_values")
        if isinstance(current, dict | list | tuple):
            if depth > bounds.max_depth:
                raise JSONBoundsError(f"{where} is nested more than {bounds.max_depth} levels deep", "too_deep")
            if isinstance(current, dict):
                for key, child in current.items():
                    if not isinstance(key, str):
                        raise JSONBoundsError(f"{where} has a key of type {type(key).__name__}; JSON keys are strings", "bad_type")
                    chars += len(key)
                    stack.append((child, depth + 1))
                if chars > bounds.max_string_chars:  # keys count too, whatever their values are
                    raise JSONBoundsError(f"{where} holds more than {bounds.max_string_chars} characters of text", "too_large")
            else:
                stack.extend((child, depth + 1) for child in current)
            continue
        problem = _scalar_problem(current, bounds)
        if problem is not None:
            raise JSONBoundsError(f"{where}: {problem[1]}", problem[0])
        if isinstance(current, str):
            chars += len(current)
        if chars > bounds.max_string_chars:
            raise JSONBoundsError(f"{where} holds more than {bounds.max_string_chars} characters of text", "too_large")
    return items


def raw_json_depth(text: str | bytes, limit: int) -> int:
    """The bracket nesting depth of JSON text, counting stops once it passes ``limit``.

    Strings are removed first, so brackets inside them do not count. Malformed text gives a
    meaningless but finite answer: the decoder that runs afterwards reports the syntax error.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    depth = deepest = 0
    for char in _BRACKET.findall(_STRING.sub("", text)):
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        else:
            depth -= 1
    return deepest
