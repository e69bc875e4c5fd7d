"""The protocol parser against every recorded frame, and properties showing it never raises."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.traces import incoming_text_frames, load_trace, trace_files
from worker.comfyui import protocol as p


def _check_fields(msg: dict[str, Any], parsed: p.ComfyUIMessage) -> None:
    kind, data = msg["type"], msg["data"]
    assert not isinstance(parsed, p.MalformedMessage | p.UnknownMessage), parsed
    assert kind == parsed.TYPE
    if isinstance(parsed, p.StatusData):
        assert parsed.queue_remaining == data["status"]["exec_info"]["queue_remaining"]
        assert parsed.sid == data.get("sid")
    elif isinstance(parsed, p.FeatureFlagsData):
        assert dict(parsed.flags) == data
        assert parsed.supports_preview_metadata is (data.get("supports_preview_metadata") is True)
    elif isinstance(parsed, p.ExecutionStartData | p.ExecutionSuccessData):
        assert (parsed.prompt_id, parsed.timestamp) == (data["prompt_id"], data.get("timestamp"))
    elif isinstance(parsed, p.ExecutionCachedData):
        assert list(parsed.nodes) == data["nodes"]
        assert parsed.prompt_id == data["prompt_id"]
    elif isinstance(parsed, p.ExecutingData):
        assert parsed.node == data["node"]
        assert parsed.prompt_id == data.get("prompt_id")
        assert parsed.display_node == data.get("display_node")
        assert parsed.is_completion == (data["node"] is None)
        assert parsed.is_reconnect_replay == ("prompt_id" not in data)
    elif isinstance(parsed, p.ProgressData):
        assert (parsed.value, parsed.max, parsed.node, parsed.prompt_id) == (data["value"], data["max"], data["node"], data["prompt_id"])
    elif isinstance(parsed, p.ProgressStateMessageData):
        assert parsed.prompt_id == data["prompt_id"]
        assert list(parsed.nodes) == list(data["nodes"])
        for node_id, entry in data["nodes"].items():
            node = parsed.nodes[node_id]
            assert (node.value, node.max, node.state) == (entry["value"], entry["max"], entry["state"])
            assert (node.display_node_id, node.parent_node_id, node.real_node_id) == (
                entry["display_node_id"],
                entry["parent_node_id"],
                entry["real_node_id"],
            )
    elif isinstance(parsed, p.ExecutedMessageData):
        assert (parsed.node, parsed.display_node, parsed.prompt_id) == (data["node"], data.get("display_node"), data["prompt_id"])
        assert parsed.output == data["output"]
    elif isinstance(parsed, p.ExecutionErrorData):
        assert (parsed.node_id, parsed.node_type, parsed.exception_type) == (data["node_id"], data["node_type"], data["exception_type"])
        assert parsed.exception_message == data["exception_message"]
        assert list(parsed.traceback) == data["traceback"]
        assert list(parsed.executed) == data["executed"]
        assert parsed.is_fatal
    elif isinstance(parsed, p.ExecutionInterruptedData):
        assert (parsed.node_id, parsed.node_type, list(parsed.executed)) == (data["node_id"], data["node_type"], data["executed"])
    # and the encoder gives back exactly what the server sent
    assert json.loads(p.encode_text(parsed)) == msg


def test_every_recorded_text_frame_parses_to_its_fields() -> None:
    count = 0
    for _, msg in incoming_text_frames():
        _check_fields(msg, p.parse_text(json.dumps(msg)))
        count += 1
    assert count >= 600  # all 678 frames of the 16 traces, not a handful


def test_every_recorded_binary_frame_header_is_understood() -> None:
    seen: set[int] = set()
    for path in trace_files():
        for record in load_trace(path):
            if record["kind"] != "ws_binary":
                continue
            kind = record["event_type"]
            seen.add(kind)
            # rebuild the frame from the recorded header fields (the payload itself is not stored)
            if kind == 1:
                frame = p.encode_preview_image(b"\xff\xd8\xff" + b"\x00" * 10, record["image_format"])
                parsed = p.parse_binary(frame)
                assert isinstance(parsed, p.PreviewImage)
                assert (parsed.format_code, parsed.format) == (record["image_format"], "jpeg")
            elif kind == 3:
                parsed3 = p.parse_binary(p.encode_progress_text(record["node_id"], record["text"]))
                assert parsed3 == p.ProgressText(record["node_id"], record["text"])
                assert len(p.encode_progress_text(record["node_id"], record["text"])) == record["length"]
            elif kind == 4:
                image = b"\xff\xd8\xff" + b"\x00" * (record["image_bytes"] - 3)
                frame = p.encode_preview_with_metadata(record["metadata"], image)
                parsed4 = p.parse_binary(frame)
                assert isinstance(parsed4, p.PreviewImageWithMetadata)
                assert dict(parsed4.metadata) == record["metadata"]
                assert parsed4.prompt_id == record["metadata"]["prompt_id"]
                assert parsed4.node_id == record["metadata"]["node_id"]
                assert record["u32_at_4"] == record["metadata_length"]
    assert seen == {1, 3, 4}


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"data": {}}', "'type'"),
        ('{"type": "progress", "data": []}', "'data'"),
        ('{"type": "progress", "data": {"value": "1", "max": 2}}', "'value'"),
        ('{"type": "progress", "data": {"value": NaN, "max": 2}}', "finite"),
        ('{"type": "progress", "data": {"value": true, "max": 2}}', "'value'"),
        ('{"type": "executing", "data": {}}', "'node'"),
        ('{"type": "status", "data": {"status": 3}}', "status"),
        ('{"type": "progress_state", "data": {"prompt_id": "p", "nodes": {"1": {"state": "weird", "value": 1, "max": 1}}}}', "state"),
        (b"\xff\xfe", "not JSON"),
        ("[" * 100000 + "]" * 100000, "not JSON"),
    ],
)
def test_malformed_text_frames_become_values(frame: str | bytes, reason: str) -> None:
    parsed = p.parse_text(frame)
    assert isinstance(parsed, p.MalformedMessage)
    assert reason in parsed.reason


def test_unknown_types_are_kept_for_the_caller() -> None:
    parsed = p.parse_text('{"type": "crystools.monitor", "data": {"cpu": 3}}')
    assert parsed == p.UnknownMessage("crystools.monitor", {"cpu": 3})


def test_oversized_frames_are_not_decoded() -> None:
    parsed = p.parse_text("x" * 101, max_bytes=100)
    assert isinstance(parsed, p.MalformedMessage)
    assert "exceeds" in parsed.reason
    assert isinstance(p.parse_binary(b"\x00" * 101, max_bytes=100), p.MalformedBinary)


def test_keys_named_like_python_internals_are_plain_data() -> None:
    parsed = p.parse_text('{"type": "executed", "data": {"node": "1", "prompt_id": "p", "output": {"__class__": ["x"], "__dict__": 1}}}')
    assert isinstance(parsed, p.ExecutedMessageData)
    assert parsed.output == {"__class__": ["x"], "__dict__": 1}


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (b"", "shorter than 4"),
        (b"\x00\x00\x00\x01\x00", "shorter than 8"),
        (struct.pack(">II", 3, 99) + b"ab", "runs past the end"),
        (struct.pack(">II", 4, 2) + b"{x", "JSONDecodeError"),
        (struct.pack(">II", 4, 2) + b"[]", "not a JSON object"),
        (struct.pack(">II", 3, 2) + b"\xff\xfe", "UnicodeDecodeError"),
    ],
)
def test_malformed_binary_frames_become_values(frame: bytes, expected: str) -> None:
    parsed = p.parse_binary(frame)
    assert isinstance(parsed, p.MalformedBinary)
    assert expected in parsed.reason


def test_unknown_binary_types_pass_through() -> None:
    assert p.parse_binary(struct.pack(">I", 9) + b"xyz") == p.UnknownBinary(9, b"xyz")


def test_image_formats_are_sniffed_not_trusted() -> None:
    png = p.parse_binary(p.encode_preview_image(b"\x89PNG\r\n", p.FORMAT_JPEG))
    assert isinstance(png, p.PreviewImage)
    assert (png.format_code, png.format) == (p.FORMAT_JPEG, "png")
    assert p.sniff_image_format(b"RIFF\x00\x00\x00\x00WEBPVP8") == "webp"
    assert p.sniff_image_format(b"GIF89a") == "unknown"


# ------------------------------------------------------------------ properties: parsing is total

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
message_types = st.sampled_from(
    [
        "status",
        "feature_flags",
        "execution_start",
        "execution_cached",
        "executing",
        "progress",
        "progress_state",
        "executed",
        "execution_success",
        "execution_error",
        "execution_interrupted",
        "logs",
        "custom",
    ]
)


@settings(max_examples=400, deadline=None)
@given(kind=message_types, data=json_values)
def test_parse_text_never_raises_on_any_json(kind: str, data: Any) -> None:
    frame = json.dumps({"type": kind, "data": data})
    result = p.parse_text(frame)
    assert isinstance(result, p.KnownMessage | p.UnknownMessage | p.MalformedMessage)


@settings(max_examples=300, deadline=None)
@given(st.text() | st.binary())
def test_parse_text_never_raises_on_any_input(frame: str | bytes) -> None:
    p.parse_text(frame)


@settings(max_examples=300, deadline=None)
@given(
    kind=message_types,
    data=st.dictionaries(st.sampled_from(["node", "prompt_id", "value", "max", "nodes", "status", "output"]), json_values),
)
def test_known_shapes_parse_or_are_reported_malformed(kind: str, data: dict[str, Any]) -> None:
    result = p.parse_text(json.dumps({"type": kind, "data": data}))
    if isinstance(result, p.ProgressData):
        assert math.isfinite(result.value)
        assert math.isfinite(result.max)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64) | st.builds(lambda k, b: struct.pack(">I", k) + b, st.sampled_from([1, 3, 4]), st.binary(max_size=64)))
def test_parse_binary_never_raises(frame: bytes) -> None:
    result = p.parse_binary(frame)
    assert isinstance(result, p.PreviewImage | p.PreviewImageWithMetadata | p.ProgressText | p.UnknownBinary | p.MalformedBinary)
