"""Input specs, base64 bounds, references and the address guard: no network involved."""

from __future__ import annotations

import base64
import re
import threading
import time
from typing import Any

import pytest

from worker.comfyui.errors import JobCancelledError, WorkflowValidationError
from worker.comfyui.results import OutputFile
from worker.fleet.media.fetch import AddressGuard, FetchSettings, URLFetcher, public_url
from worker.fleet.media.inputs import parse_inputs, resolve_input, task_subfolder
from worker.fleet.media.outputs import output_key
from worker.fleet.media.pipeline import manifest_key
from worker.fleet.media.refs import check_references, rewrite_references
from worker.fleet.media.store import check_key
from worker.simulator.media import solid_png

PNG = solid_png(8, 8, (10, 20, 30))


def img2img(reference: str = "input:photo") -> dict[str, Any]:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": reference}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "out"}},
    }


def fetcher(max_bytes: int = 1024) -> URLFetcher:
    return URLFetcher(AddressGuard(resolver=lambda host, port: ["93.184.215.14"]), FetchSettings(max_bytes=max_bytes))


def error_type(exc: pytest.ExceptionInfo[WorkflowValidationError]) -> str | None:
    return exc.value.error_type


@pytest.mark.parametrize(
    "inputs",
    [
        ["not", "a", "mapping"],
        {"../x": {"url": "http://a/b.png"}},
        {"photo": {"url": "http://a", "base64": "AA=="}},
        {"photo": {"path": "/etc/passwd"}},
        {"photo": {"url": ""}},
        {"photo": "http://a/b.png"},
    ],
)
def test_malformed_specs_are_validation_errors(inputs: Any) -> None:
    with pytest.raises(WorkflowValidationError):
        parse_inputs(inputs)


def test_base64_and_data_uri_decode_and_are_sniffed() -> None:
    raw = base64.b64encode(PNG).decode()
    for value in (raw, f"data:image/png;base64,{raw}", f"data:;base64,{raw}"):
        (source,) = parse_inputs({"photo": {"base64": value}})
        got = resolve_input(source, fetcher=fetcher(), store=None)
        assert got.content == PNG and got.sniffed.content_type == "image/png" and got.filename == "photo.png"


def test_base64_bounds_and_garbage() -> None:
    (too_big,) = parse_inputs({"photo": {"base64": base64.b64encode(PNG * 20).decode()}})
    with pytest.raises(WorkflowValidationError) as exc:
        resolve_input(too_big, fetcher=fetcher(max_bytes=len(PNG)), store=None)
    assert error_type(exc) == "input_too_large"
    (garbage,) = parse_inputs({"photo": {"base64": "this is not base64!"}})
    with pytest.raises(WorkflowValidationError) as exc:
        resolve_input(garbage, fetcher=fetcher(), store=None)
    assert error_type(exc) == "input_bad_base64"
    (html,) = parse_inputs({"photo.png": {"base64": base64.b64encode(b"<html>hi</html>").decode()}})
    with pytest.raises(WorkflowValidationError) as exc:
        resolve_input(html, fetcher=fetcher(), store=None)
    assert error_type(exc) == "input_bad_content"  # the name says .png, the bytes say otherwise
    assert "PGh0" not in str(exc.value)  # the blob never appears in the error


def test_store_key_without_a_store_is_a_validation_error() -> None:
    (source,) = parse_inputs({"photo": {"store_key": "outputs/t/9_0.png"}})
    with pytest.raises(WorkflowValidationError) as exc:
        resolve_input(source, fetcher=fetcher(), store=None)
    assert error_type(exc) == "input_unavailable"


def test_references_match_the_inputs_one_to_one() -> None:
    assert check_references(img2img(), {"photo"}) == {"photo": [("1", "image")]}
    with pytest.raises(WorkflowValidationError) as exc:
        check_references(img2img("input:phtoo"), {"photo"})
    assert error_type(exc) == "unknown_input" and "1" in exc.value.node_errors
    with pytest.raises(WorkflowValidationError) as exc:
        check_references(img2img("example.png"), {"photo"})
    assert error_type(exc) == "unused_input"
    assert check_references(img2img("example.png"), set()) == {}  # a file already on the pod is fine


def test_rewrite_replaces_only_references_and_copies() -> None:
    workflow = img2img()
    rewritten = rewrite_references(workflow, {"photo": "comfy-celery/t1/photo.png"})
    assert rewritten["1"]["inputs"]["image"] == "comfy-celery/t1/photo.png"
    assert workflow["1"]["inputs"]["image"] == "input:photo"
    assert rewritten["3"] == workflow["3"]


def test_task_subfolder_and_output_keys_never_trust_names() -> None:
    assert task_subfolder("../../etc").startswith("comfy-celery/") and task_subfolder("../../etc").endswith("-______etc")
    hostile = OutputFile("9:1", "image", filename="../../x/evil.sh", subfolder="/etc")
    assert re.fullmatch(r"outputs/task-1/[0-9a-f]{12}-9_1_0\.bin", check_key(output_key("task-1", hostile, 0)))
    assert output_key("task-1", OutputFile("9", "image", filename="ComfyUI_00001_.PNG"), 2) == "outputs/task-1/9_2.png"


@pytest.mark.parametrize(
    "ids", [("9:1", "9_1"), ("9.1", "9_1"), ("n" * 64 + "a", "n" * 64 + "b"), ("a/b", "a:b")], ids=["colon", "dot", "long", "both-unsafe"]
)
def test_distinct_ids_never_share_a_key_or_a_folder(ids: tuple[str, str]) -> None:
    # a plain replacement gave both files one key: the second replaced the first in the store
    first, second = ids
    keys = {output_key("task-1", OutputFile(node, "image", filename="x.png"), 0) for node in ids}
    assert len(keys) == 2
    assert output_key(first, OutputFile("9", "image"), 0) != output_key(second, OutputFile("9", "image"), 0)
    assert task_subfolder(first) != task_subfolder(second)


@pytest.mark.parametrize("task_id", ["_task", "-1", "", ".hidden"])
def test_ids_that_are_not_key_parts_still_give_valid_keys(task_id: str) -> None:
    # a caller may choose the task id: "_task" passed through as is and the store refused the key
    assert check_key(output_key(task_id, OutputFile(task_id, "image", filename="x.png"), 0))
    assert check_key(manifest_key(task_id))


@pytest.mark.parametrize(
    "addresses",
    [
        ["127.0.0.1"],
        ["10.1.2.3"],
        ["169.254.169.254"],
        ["192.168.0.1"],
        ["::1"],
        ["fe80::1"],
        ["100.64.0.1"],
        ["0.0.0.0"],
        ["::ffff:127.0.0.1"],
        ["93.184.215.14", "10.0.0.1"],
        ["224.0.0.1"],
        ["2002:7f00:1::"],  # 6to4 for 127.0.0.1 (ipaddress calls it global)
        ["2002:a9fe:a9fe::1"],  # 6to4 for the metadata service
        ["fec0::1"],  # site-local (deprecated, ipaddress calls it global)
        ["64:ff9b::a9fe:a9fe"],  # NAT64 for the metadata service
    ],
)
def test_guard_refuses_any_non_public_address(addresses: list[str]) -> None:
    guard = AddressGuard(resolver=lambda host, port: addresses)
    with pytest.raises(WorkflowValidationError) as exc:
        guard.check("images.example", 443)
    assert error_type(exc) == "input_forbidden_address"


def test_guard_lets_public_ipv6_through_including_6to4_of_a_public_address() -> None:
    assert AddressGuard(resolver=lambda host, port: ["2606:4700::1111"]).check("images.example", 443) == "2606:4700::1111"
    assert AddressGuard(resolver=lambda host, port: ["2002:5db8:d70e::1"]).check("images.example", 443) == "2002:5db8:d70e::1"


def test_guard_allow_list_by_network_or_host_and_pins_the_checked_address() -> None:
    assert AddressGuard(resolver=lambda h, p: ["93.184.215.14"]).check("images.example", 443) == "93.184.215.14"
    assert AddressGuard(("10.0.0.0/8",), resolver=lambda h, p: ["10.1.2.3"]).check("minio.internal", 9000) == "10.1.2.3"
    assert AddressGuard(("minio.internal",), resolver=lambda h, p: ["10.1.2.3"]).check("MINIO.internal.", 9000) == "10.1.2.3"
    with pytest.raises(WorkflowValidationError):
        AddressGuard(("10.0.0.0/8",), resolver=lambda h, p: ["10.1.2.3", "127.0.0.1"]).check("x.internal", 80)


def test_guard_unresolvable_host() -> None:
    def fail(host: str, port: int) -> list[str]:
        raise OSError("no such host")

    with pytest.raises(WorkflowValidationError) as exc:
        AddressGuard(resolver=fail).check("nowhere.invalid", 80)
    assert error_type(exc) == "input_unreachable"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://a/b.png",
        "file:///etc/passwd",
        "http://user:pw@a/b.png",
        "gopher://x",
        "http:///nohost",
        "http://a:99999/b.png",
        "http://[::1/pw",
    ],
)
def test_fetch_refuses_other_schemes_and_credentials(url: str) -> None:
    with pytest.raises(WorkflowValidationError) as exc:
        fetcher().fetch(url)
    assert error_type(exc) == "input_bad_url"
    assert "pw" not in str(exc.value)


def test_public_url_drops_credentials_and_query() -> None:
    assert public_url("https://u:secret@host:8443/a/b.png?X-Amz-Signature=abc") == "https://host:8443/a/b.png"


class _HTMLFetcher(URLFetcher):
    """Answers every URL with an HTML page (a login wall): no network."""

    def fetch(self, url: str, *, cancel: threading.Event | None = None) -> bytes:
        return b"<!doctype html><html>please log in</html>"


@pytest.mark.parametrize("url", ["https://cdn.example/a.png#access_token=SECRET", "https://cdn.example/a.png?X-Amz-Signature=SECRET#frag"])
def test_an_error_about_a_url_input_names_it_without_its_fragment_or_query(url: str) -> None:
    # the fragment never goes to the server but it is part of the task argument: a token there
    # reached the error message (result backend, logs, task-failed event)
    (source,) = parse_inputs({"photo": {"url": url}})
    with pytest.raises(WorkflowValidationError) as exc:
        resolve_input(source, fetcher=_HTMLFetcher(AddressGuard()), store=None)
    assert error_type(exc) == "input_bad_content"
    assert "SECRET" not in str(exc.value) and "https://cdn.example/a.png" in str(exc.value)


def test_a_malformed_url_is_a_validation_error_everywhere_it_is_shown() -> None:
    # urlsplit raises ValueError on an unclosed IPv6 bracket: it escaped untyped
    assert public_url("http://[::1/x?sig=SECRET") == "(malformed URL)"
    (source,) = parse_inputs({"photo": {"url": "http://[::1/x"}})
    assert "malformed" in source.describe()
    with pytest.raises(WorkflowValidationError) as exc:
        resolve_input(source, fetcher=fetcher(), store=None)
    assert error_type(exc) == "input_bad_url"


def test_inputs_whose_names_share_a_stem_are_uploaded_under_distinct_file_names() -> None:
    # "photo.png" and "photo.jpg", both PNG by content, were both uploaded as photo.png: the
    # second replaced the first on the pod and both loader nodes read the second image
    raw = base64.b64encode(PNG).decode()
    sources = parse_inputs({"photo.png": {"base64": raw}, "photo.jpg": {"base64": raw}, "photo": {"base64": raw}, "other": {"base64": raw}})
    names = [resolve_input(source, fetcher=fetcher(max_bytes=4096), store=None).filename for source in sources]
    assert len(set(names)) == 4 and all(name.endswith(".png") for name in names)
    assert "other.png" in names  # a stem nobody shares keeps its plain name


def test_a_resolver_that_hangs_is_bounded_by_the_connect_timeout_and_the_cancel() -> None:
    # getaddrinfo takes no timeout: a slow DNS server held the fetch for the system's retries,
    # past total_timeout and deaf to the cancel
    release = threading.Event()

    def hang(host: str, port: int) -> list[str]:
        release.wait(10)
        return ["93.184.215.14"]

    slow = URLFetcher(AddressGuard(resolver=hang), FetchSettings(connect_timeout=0.2))
    started = time.monotonic()
    with pytest.raises(WorkflowValidationError) as exc:
        slow.fetch("https://images.example/a.png")
    assert error_type(exc) == "input_unreachable" and "resolve" in str(exc.value)
    assert time.monotonic() - started < 2
    cancel = threading.Event()
    threading.Timer(0.1, cancel.set).start()  # while resolving (connect_timeout is 5 s here)
    started = time.monotonic()
    with pytest.raises(JobCancelledError):
        URLFetcher(AddressGuard(resolver=hang)).fetch("https://images.example/a.png", cancel=cancel)
    assert time.monotonic() - started < 2
    release.set()
