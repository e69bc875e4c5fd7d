from __future__ import annotations

import itertools

import pytest

from worker.comfyui.clock import FakeClock
from worker.comfyui.throttle import Throttle
from worker.comfyui.urls import ServerURL, redact_url


def _throttle(interval: float = 1.0) -> tuple[Throttle[int], list[int], FakeClock]:
    clock = FakeClock()
    delivered: list[int] = []
    return Throttle(delivered.append, clock=clock, interval=interval), delivered, clock


def test_first_update_goes_at_once_then_one_per_interval() -> None:
    throttle, delivered, clock = _throttle()
    throttle.submit(1)
    throttle.submit(2)
    throttle.submit(3)
    assert delivered == [1]
    clock.advance(0.5)
    throttle.poll()
    assert delivered == [1]
    clock.advance(0.5)
    throttle.poll()
    assert delivered == [1, 3]  # the trailing value, not the skipped 2


def test_an_update_after_the_window_goes_at_once() -> None:
    throttle, delivered, clock = _throttle()
    throttle.submit(1)
    clock.advance(1.0)
    throttle.submit(2)
    assert delivered == [1, 2]


def test_only_changes_are_delivered() -> None:
    throttle, delivered, clock = _throttle()
    throttle.submit(1)
    clock.advance(5)
    throttle.submit(1)
    assert delivered == [1]
    throttle.submit(2)
    clock.advance(0.1)
    throttle.submit(3)
    throttle.submit(2)  # back to what was delivered: nothing pending any more
    clock.advance(5)
    throttle.poll()
    assert delivered == [1, 2]


def test_final_goes_at_once_and_replaces_the_pending_value() -> None:
    throttle, delivered, clock = _throttle()
    throttle.submit(1)
    throttle.submit(50)
    throttle.submit(100, final=True)
    assert delivered == [1, 100]
    clock.advance(5)
    throttle.poll()
    assert delivered == [1, 100]
    assert throttle.delivered == 2


def test_flush_and_due_time() -> None:
    throttle, delivered, clock = _throttle(interval=2.0)
    assert throttle.seconds_until_due() is None
    throttle.submit(1)
    throttle.submit(2)
    clock.advance(0.5)
    assert throttle.seconds_until_due() == 1.5
    throttle.flush()
    assert delivered == [1, 2]


def test_at_most_one_per_second_over_a_burst() -> None:
    clock = FakeClock()
    delivered: list[int] = []
    times: list[float] = []

    def deliver(value: int) -> None:
        times.append(clock.monotonic())
        delivered.append(value)

    throttle = Throttle(deliver, clock=clock, interval=1.0)
    for step in range(1, 101):  # 100 updates over 10 s
        throttle.submit(step)
        clock.advance(0.1)
        throttle.poll()
    throttle.submit(101, final=True)
    gaps = [b - a for a, b in itertools.pairwise(times[:-1])]
    assert all(gap >= 1.0 - 1e-9 for gap in gaps)
    assert delivered[-1] == 101
    assert 10 <= len(delivered) <= 12


@pytest.mark.parametrize(
    ("url", "ws"),
    [
        ("http://127.0.0.1:8188", "ws://127.0.0.1:8188/ws?clientId=c%201"),
        ("https://pod-8188.proxy.example/", "wss://pod-8188.proxy.example/ws?clientId=c%201"),
        ("https://proxy.example/comfy/pod1/", "wss://proxy.example/comfy/pod1/ws?clientId=c%201"),
        ("http://[::1]:8188", "ws://[::1]:8188/ws?clientId=c%201"),
    ],
)
def test_websocket_urls_keep_scheme_and_prefix(url: str, ws: str) -> None:
    assert ServerURL.parse(url).websocket("c 1") == ws


def test_token_mode_and_http_paths() -> None:
    server = ServerURL.parse("https://proxy.example/pfx")
    assert server.websocket("c", token="s3cret") == "wss://proxy.example/pfx/ws?clientId=c&token=s3cret"
    assert server.http("/api/prompt") == "https://proxy.example/pfx/api/prompt"


@pytest.mark.parametrize("bad", ["ftp://x", "http://", "pod:8188", "http://h:99999", "http://h/?token=x", "http://user:pw@h"])
def test_bad_server_urls_are_rejected_without_echoing_secrets(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        ServerURL.parse(bad)
    assert "pw" not in str(info.value)
    assert "token=x" not in str(info.value)


def test_redaction() -> None:
    assert redact_url("https://user:pw@h:1/p?token=abc&clientId=c&api_key=k") == "https://***@h:1/p?token=***&clientId=c&api_key=***"
    assert "abc" not in redact_url("wss://h/ws?clientId=c&token=abc")


def test_redact_url_never_raises_on_a_port_out_of_range() -> None:
    # urlsplit parses "h:99999" and only .port raises: redact_url is called inside error paths
    # (a hostile WebSocket redirect's Location, settings messages), where a ValueError escaped untyped
    assert redact_url("http://u:pw@h:99999/x?token=abc") == "http://***@h/x?token=***"
    assert redact_url("http://h:port/x") == "http://h/x"
