"""``status``'s queue scan reads messages anyone with broker access wrote: a hostile one is skipped."""

from __future__ import annotations

import json

import pytest

from worker.app.preflight import _message_id


@pytest.mark.parametrize("raw", ["[" * 100_000 + "]" * 100_000, '{"headers": ' * 50_000 + "1" + "}" * 50_000, b"\xff\xfe", "null"])
def test_a_hostile_or_broken_queue_entry_has_no_id_and_does_not_crash(raw: str | bytes) -> None:
    # json.loads raised RecursionError (not a ValueError) on the deep ones: the scan crashed
    assert _message_id(raw) is None


def test_a_kombu_message_gives_its_task_id() -> None:
    assert _message_id(json.dumps({"headers": {"id": "t-1"}, "body": "..."})) == "t-1"
