"""The defences against hostile servers, property by property (issue 15, part 2)."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websocket import ABNF

from worker.comfyui.errors import OutputSaveError, ResultTooLargeError
from worker.comfyui.redact import Redactor
from worker.comfyui.results import MAX_OUTPUT_FILES, OutputFile, check_result_size, files_from_outputs
from worker.comfyui.ws_frames import FrameTooLargeError, _CappedContinuation, _CappedFrameBuffer
from worker.fleet.outputs import MAX_NAME_BYTES, save_outputs


class CountingStream:
    """A socket's recv: a frame header, then as many payload bytes as asked for, counted."""

    def __init__(self, header: bytes) -> None:
        self.pending = header
        self.consumed = 0

    def __call__(self, size: int) -> bytes:
        if self.pending:
            out, self.pending = self.pending[:size], self.pending[size:]
        else:
            out = b"\0" * size
        self.consumed += len(out)
        return out


def frame_header(length: int, opcode: int = 1, fin: bool = True) -> bytes:
    first = bytes([(0x80 if fin else 0) | opcode])
    if length < 126:
        return first + bytes([length])
    if length < 65536:
        return first + b"\x7e" + struct.pack(">H", length)
    return first + b"\x7f" + struct.pack(">Q", length)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**63 - 1), st.integers(1, 1 << 16))
def test_a_frame_is_refused_from_its_header_alone_iff_it_exceeds_the_cap(announced: int, cap: int) -> None:
    header = frame_header(announced)
    stream = CountingStream(header)
    buffer = _CappedFrameBuffer(stream, True, cap)
    if announced > cap:
        with pytest.raises(FrameTooLargeError):
            buffer.recv_frame()
        assert stream.consumed == len(header)  # not one payload byte
        with pytest.raises(FrameTooLargeError):  # poisoned: closing cannot read the rest either
            buffer.recv_frame()
        assert stream.consumed == len(header)
    else:
        assert len(buffer.recv_frame().data) == announced


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 400), min_size=1, max_size=12), st.integers(1, 2000))
def test_fragments_are_refused_once_their_sum_passes_the_cap(sizes: list[int], cap: int) -> None:
    buffer = _CappedFrameBuffer(CountingStream(b""), True, cap)
    frames = _CappedContinuation(False, True, cap, buffer)

    class Frame(ABNF):
        def __init__(self, index: int, size: int) -> None:
            super().__init__()
            self.opcode = 1 if index == 0 else 0
            self.fin = index == len(sizes) - 1
            self.data = b"a" * size

    total = 0
    for index, size in enumerate(sizes):
        total += size
        if total > cap:
            with pytest.raises(FrameTooLargeError):
                frames.add(Frame(index, size))
            return
        frames.add(Frame(index, size))
    assert sum(sizes) <= cap


SECRET = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=4, max_size=40)


@settings(max_examples=300, deadline=None)
@given(SECRET, st.text(max_size=300), st.text(max_size=300), st.integers(1, 400))
def test_no_excerpt_holds_a_secret_whole_or_cut(secret: str, before: str, after: str, limit: int) -> None:
    redactor = Redactor.from_headers({"Authorization": f"Bearer {secret}"})
    body = (before + secret + after).encode()
    excerpt = redactor.excerpt(body, limit)
    assert len(excerpt) <= limit
    assert secret not in excerpt
    # a cut falling inside the secret leaves the mask (then what followed), never the secret's first characters
    text = before + secret + after
    if len(before) < limit < len(before) + len(secret) and text.find(secret) == len(before) and redactor(before) == before:
        assert excerpt[len(before) :].startswith("***"[: limit - len(before)])


def test_outputs_beyond_the_cap_are_a_typed_error() -> None:
    outputs = {"9": {"images": [{"filename": f"{i}.png"} for i in range(MAX_OUTPUT_FILES + 1)]}}
    with pytest.raises(ResultTooLargeError):
        files_from_outputs(outputs)
    with pytest.raises(ResultTooLargeError):
        check_result_size({"9": {"text": ["x" * (9 * 1024 * 1024)]}})
    assert check_result_size({"9": {"text": ["ok"]}}) > 0


# ------------------------------------------------------------------ hostile names when saving


class FakeClient:
    """Writes the file name as the content."""

    def download_to(self, sink: BinaryIO, filename: str, subfolder: str = "", file_type: str = "output", **_: Any) -> int:
        return sink.write(filename.encode())


def image(filename: str, subfolder: str = "") -> OutputFile:
    return OutputFile("9", "image", filename=filename, subfolder=subfolder)


def test_a_part_symlink_is_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png.part").symlink_to(outside)
    saved = save_outputs(FakeClient(), [image("a.png")], out)  # type: ignore[arg-type]
    assert outside.read_text() == "keep me"
    assert saved[0].name == "a-1.png" and saved[0].read_bytes() == b"a.png"
    assert (out / "a.png.part").is_symlink()  # not ours: left alone


def test_an_existing_part_file_is_not_overwritten_or_deleted(tmp_path: Path) -> None:
    (tmp_path / "a.png.part").write_bytes(b"someone else's")
    saved = save_outputs(FakeClient(), [image("a.png")], tmp_path)  # type: ignore[arg-type]
    assert (tmp_path / "a.png.part").read_bytes() == b"someone else's"
    assert saved[0].name == "a-1.png"


def test_a_300_character_name_is_shortened_and_saved(tmp_path: Path) -> None:
    saved = save_outputs(FakeClient(), [image("n" * 300 + ".png")], tmp_path)  # type: ignore[arg-type]
    assert saved[0].suffix == ".png" and len(saved[0].name) <= MAX_NAME_BYTES


def test_a_name_colliding_with_a_directory_fails_typed_and_the_others_are_saved(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a file where a directory is wanted")
    items = [image("x.png", subfolder="a"), image("ok.png")]
    with pytest.raises(OutputSaveError) as caught:
        save_outputs(FakeClient(), items, tmp_path)  # type: ignore[arg-type]
    assert [f["filename"] for f in caught.value.failures] == ["x.png"]
    assert [Path(p).name for p in caught.value.details["saved"]] == ["ok.png"]
    assert (tmp_path / "ok.png").read_bytes() == b"ok.png"


names = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\0"), min_size=0, max_size=320)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(names, names), min_size=1, max_size=6))
def test_any_names_are_saved_inside_or_fail_typed(tmp_path_factory: pytest.TempPathFactory, pairs: list[tuple[str, str]]) -> None:
    out = tmp_path_factory.mktemp("out")
    items = [image(name or "x", subfolder=sub) for sub, name in pairs]
    try:
        saved = save_outputs(FakeClient(), items, out)  # type: ignore[arg-type]
    except OutputSaveError as exc:
        saved = [Path(p) for p in exc.details["saved"]]
    root = out.resolve()
    for path in saved:
        assert root in path.resolve().parents
    for dirpath, _, filenames in os.walk(out):
        assert not any(f.endswith(".part") for f in filenames), dirpath
