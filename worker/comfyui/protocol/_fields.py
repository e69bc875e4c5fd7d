"""Field readers shared by the message parsers: each raises :class:`_Invalid`, which the
parsers turn into a :class:`MalformedMessage` (parsing is total)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

#: Frames larger than this are not decoded (a configurable guard against memory blow-ups).
MAX_FRAME_BYTES = 64 * 1024 * 1024

Number = int | float
ImageFormat = Literal["jpeg", "png", "webp", "unknown"]


class _Invalid(Exception):
    """Raised inside field readers; always caught in :func:`parse_text`."""


def _obj(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"{what} is not an object")
    return value


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise _Invalid(f"{key!r} is not a string")
    return value


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Invalid(f"{key!r} is not a string")
    return value


def _num(data: Mapping[str, Any], key: str) -> Number:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"{key!r} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Invalid(f"{key!r} is not finite")
    return value


def _opt_num(data: Mapping[str, Any], key: str) -> Number | None:
    return None if data.get(key) is None else _num(data, key)


def _str_list(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Invalid(f"{key!r} is not a list of strings")
    return tuple(value)


def _put(wire: dict[str, Any], key: str, value: object) -> None:
    """Add an optional key only when it has a value (older servers omit them)."""
    if value is not None:
        wire[key] = value
