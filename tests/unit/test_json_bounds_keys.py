"""The text bound counts dictionary keys even when no string value follows them."""

from __future__ import annotations

import pytest

from worker.comfyui.json_bounds import JSONBounds, JSONBoundsError, check_value


@pytest.mark.parametrize("value", [{"k" * 101: {}}, {"k" * 101: []}, [{"k" * 101: 1}], {"a" * 60: {"b" * 60: None}}])
def test_long_keys_alone_exceed_the_text_bound(value: object) -> None:
    # keys were added to the count but it was only compared after a *string* value: a key over
    # the bound whose value was a container, a number or null passed
    with pytest.raises(JSONBoundsError) as caught:
        check_value(value, JSONBounds(max_string_chars=100))
    assert caught.value.kind == "too_large"


def test_text_within_the_bound_passes() -> None:
    assert check_value({"k" * 50: {"v": "x" * 48}}, JSONBounds(max_string_chars=100)) == 3
