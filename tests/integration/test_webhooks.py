"""Webhooks: signed deliveries to a real receiver on 127.0.0.1, retries, and the address rules."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from standardwebhooks import Webhook

from tasks.client import TASK_NAME, ComfyClient
from tests.conftest import slow_workflow
from tests.integration.celery_support import app_for, env_for
from tests.schema_support import check
from tests.webhook_receiver import Received, Receiver, webhook_receiver
from worker.fleet.netguard import AddressGuard, BlockedAddressError
from worker.fleet.webhooks import WebhookSender
from worker.simulator import ComfyUISimulator

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
LOCAL = AddressGuard(["127.0.0.1/32"])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as made:
        yield made


def sender(*, delays: Sequence[float] = (0.05, 0.05), guard: AddressGuard = LOCAL, timeout: float = 0.3) -> WebhookSender:
    return WebhookSender(SECRET, guard=guard, timeout=timeout, retry_delays=delays, progress_interval=0.5)


def verified(request: Received) -> Any:
    """Standard Webhooks verification, by the package's own code (raises on a bad signature)."""
    return Webhook(SECRET).verify(request.body, request.headers)


DONE = {"task_id": "job-1", "state": "SUCCESS", "result": {"status": "success"}}


def test_a_500_is_retried_with_the_same_id_and_fresh_signatures(receiver: Receiver) -> None:
    receiver.plan["/hook"] = [500, 500, 200]
    hooks = sender()
    try:
        assert hooks.send(f"{receiver.url}/hook", "job-1", DONE)
        got = receiver.wait_for(lambda r: len(r) == 3)
        assert hooks.idle(5)
    finally:
        hooks.close()
    assert {r.headers["webhook-id"] for r in got} == {"msg_job-1_succeeded"}
    for request in got:
        payload = verified(request)
        assert payload["type"] == "job.succeeded" and payload["data"] == DONE
    assert [outcome for _, _, outcome in hooks.attempts] == [500, 500, 200]
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + base64.b64encode(b"another secret of 24 b.").decode()).verify(got[0].body, got[0].headers)


def test_a_hanging_receiver_costs_one_timeout_per_attempt(receiver: Receiver) -> None:
    receiver.plan["/hook"] = ["hang", 200]
    hooks = sender(timeout=0.2)
    try:
        started = time.monotonic()
        hooks.send(f"{receiver.url}/hook", "job-1", DONE)
        assert time.monotonic() - started < 0.05  # send() only queues
        receiver.wait_for(lambda r: len(r) == 2)
        assert hooks.idle(5)
    finally:
        hooks.close()
    first, second = hooks.attempts
    assert isinstance(first[2], str) and "timed out" in first[2]
    assert second[2] == 200


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.plan["/hook"] = [302]
    hooks = sender(delays=(0.02,))
    try:
        hooks.send(f"{receiver.url}/hook", "job-1", DONE)
        receiver.wait_for(lambda r: len(r) == 2)
        assert hooks.idle(5)
    finally:
        hooks.close()
    assert [r.path for r in receiver.received] == ["/hook", "/hook"]  # never /elsewhere; then it gave up
    assert [outcome for _, _, outcome in hooks.attempts] == [302, 302]


def test_progress_is_throttled_and_not_retried(receiver: Receiver) -> None:
    receiver.plan["/hook"] = [500]
    progress = {"task_id": "job-1", "state": "PROGRESS", "progress": {"percent": 10}}
    hooks = sender()
    try:
        assert hooks.send(f"{receiver.url}/hook", "job-1", progress)
        assert not hooks.send(f"{receiver.url}/hook", "job-1", progress)  # within progress_interval
        assert hooks.idle(5)
    finally:
        hooks.close()
    assert len(receiver.received) == 1
    assert verified(receiver.received[0])["type"] == "job.progress"


def test_the_address_rules_apply_at_delivery(receiver: Receiver) -> None:
    hooks = sender(guard=AddressGuard())
    try:
        hooks.send(f"{receiver.url}/hook", "job-1", DONE)
        assert hooks.idle(5)
    finally:
        hooks.close()
    assert receiver.received == []
    assert "non-public" in str(hooks.attempts[0][2])


@pytest.mark.parametrize(
    ("url", "addresses"),
    [
        ("http://metadata/latest", ["169.254.169.254"]),
        ("http://localhost:6379/", ["127.0.0.1"]),
        ("http://[::1]/", ["::1"]),
        ("http://mapped/", ["::ffff:10.0.0.1"]),
        ("http://cgnat/", ["100.64.0.1"]),
        ("http://mixed.example/", ["93.184.215.14", "192.168.1.10"]),
        ("ftp://files.example/", ["93.184.215.14"]),
        ("http://user:pw@files.example/", ["93.184.215.14"]),
        ("http:///nohost", ["93.184.215.14"]),
    ],
)
def test_address_rules_refuse(url: str, addresses: list[str]) -> None:
    with pytest.raises(BlockedAddressError):
        AddressGuard(resolver=lambda host, port: addresses).check(url)


def test_address_rules_accept_public_and_allowed_networks() -> None:
    public = AddressGuard(resolver=lambda host, port: ["93.184.215.14"]).check("https://hooks.example/a?b=1")
    assert (public.address, public.port, public.path, public.host) == ("93.184.215.14", 443, "/a?b=1", "hooks.example")
    assert AddressGuard(["10.0.0.0/8"], resolver=lambda host, port: ["10.1.2.3"]).check("http://svc:8080/").address == "10.1.2.3"


# ------------------------------------------------------------------ through Celery


def test_a_job_calls_its_webhook_on_progress_and_success(broker: str, sim: ComfyUISimulator, receiver: Receiver) -> None:
    env = env_for(broker, sim.url, WEBHOOK_SECRET=SECRET, WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32", WEBHOOK_PROGRESS_SECONDS="0")
    app = app_for(env)
    client = ComfyClient(app)
    with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False, shutdown_timeout=10):
        job_id = client.submit(
            slow_workflow(steps=20), options={"webhook_url": f"{receiver.url}/hooks/comfy?site=1", "webhook_progress": True}
        )
        final = client.wait(job_id, timeout=20)
        got = receiver.wait_for(lambda r: any(json.loads(x.body)["type"] == "job.succeeded" for x in r))
    payloads = [verified(r) for r in got]
    assert {r.path for r in got} == {"/hooks/comfy?site=1"}
    for payload in payloads:
        check("webhook", payload)
    types = [p["type"] for p in payloads]
    assert types[-1] == "job.succeeded" and "job.progress" in types, types
    assert payloads[-1]["data"] == final  # the same view status() returns
    assert len({r.headers["webhook-id"] for r in got}) == len(got)


def test_a_failing_receiver_changes_nothing_for_the_job(broker: str, sim: ComfyUISimulator, receiver: Receiver) -> None:
    receiver.plan["/hook"] = ["hang"]
    env = env_for(broker, sim.url, WEBHOOK_SECRET=SECRET, WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32")
    app = app_for(env)
    client = ComfyClient(app)
    with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False, shutdown_timeout=10):
        started = time.monotonic()
        job_id = client.submit(slow_workflow(steps=2), options={"webhook_url": f"{receiver.url}/hook", "webhook_progress": True})
        final = client.wait(job_id, timeout=20)
        took = time.monotonic() - started
    assert final["state"] == "SUCCESS", final
    assert took < 4  # the hanging receiver (5 s timeout per attempt) never held the job up


@pytest.mark.parametrize(
    ("extra", "url", "message"),
    [
        ({"WEBHOOK_SECRET": SECRET}, "http://127.0.0.1:9/hook", "non-public"),
        ({}, "http://127.0.0.1:9/hook", "WEBHOOK_SECRET"),
        ({"WEBHOOK_SECRET": SECRET}, "file:///etc/passwd", "http or https"),
    ],
)
def test_a_refused_webhook_fails_the_job_before_it_runs(
    broker: str, sim: ComfyUISimulator, extra: dict[str, str], url: str, message: str
) -> None:
    app = app_for(env_for(broker, sim.url, **extra))
    client = ComfyClient(app)
    with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False, shutdown_timeout=10):
        # sent as a backend without our client would (the client refuses a non-http URL itself)
        sent = app.send_task(TASK_NAME, args=[slow_workflow(steps=2)], kwargs={"options": {"webhook_url": url}}, queue="comfyui")
        final = client.wait(str(sent.id), timeout=20)
    assert final["state"] == "FAILURE" and final["error"]["code"] == "validation", final
    assert message in final["error"]["message"]
    assert sim.request_counts().get("POST /prompt", 0) == 0


def test_a_job_cancelled_while_queued_sends_job_cancelled(broker: str, sim: ComfyUISimulator, receiver: Receiver) -> None:
    """The worker discards a revoked message without running it (Celery's task_revoked path)."""
    env = env_for(broker, sim.url, WEBHOOK_SECRET=SECRET, WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32")
    app = app_for(env)
    client = ComfyClient(app)
    with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False, shutdown_timeout=10):
        ahead = client.submit(slow_workflow(steps=2000, salt=1))
        for view in client.watch(ahead, timeout=20):
            if view["state"] == "PROGRESS":
                break
        queued = client.submit(slow_workflow(steps=2, salt=2), options={"webhook_url": f"{receiver.url}/hook"})
        client.cancel(queued)
        client.cancel(ahead)
        assert client.wait(queued, timeout=20)["state"] == "REVOKED"
        got = receiver.wait_for(lambda r: len(r) >= 1)
    payload = verified(got[0])
    check("webhook", payload)
    assert payload["type"] == "job.cancelled" and payload["data"]["task_id"] == queued
    assert sim.request_counts().get("POST /prompt", 0) == 1  # only the job ahead reached the pod
