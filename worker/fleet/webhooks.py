"""Webhooks: tell a job's caller that it progressed or ended, signed per Standard Webhooks.

Why a background thread: a receiver that hangs, answers 500 or is down must never delay a job
or change its result. :meth:`WebhookSender.send` only queues; one daemon thread per process
delivers, retrying a final event with exponential backoff (a progress event is not retried:
a newer one or the final one supersedes it). Every delivery re-checks the URL against the
address rules (:mod:`worker.fleet.netguard`) and connects to the checked address itself, with
connect/read timeouts, never following a redirect (a 3xx is a failed attempt: following it
would let a public receiver bounce us to a private address).

The body is ``{"type", "timestamp", "data"}`` with ``data`` the job's documented JSON view (the
one ``status()`` returns); the headers are ``webhook-id`` (the same on every retry of one
message, so a receiver can de-duplicate), ``webhook-timestamp`` and ``webhook-signature``
(``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` under the worker's secret, never a task
argument).
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import json
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

from worker.fleet.netguard import AddressGuard, BlockedAddressError, CheckedURL

__all__ = ["FINAL_EVENTS", "Delivery", "WebhookSender", "event_type_for", "http_post"]

log = logging.getLogger(__name__)

FINAL_EVENTS = {"SUCCESS": "job.succeeded", "FAILURE": "job.failed", "REVOKED": "job.cancelled"}
PROGRESS_EVENT = "job.progress"
USER_AGENT = "comfy-celery-webhooks/1"
MAX_RESPONSE_BYTES = 64 * 1024

#: (checked URL, headers, body, timeout) -> HTTP status; injectable for tests
Poster = Callable[[CheckedURL, Mapping[str, str], bytes, float], int]


def event_type_for(state: str) -> str:
    """The webhook event type of a job state (``job.progress`` for anything not final)."""
    return FINAL_EVENTS.get(state, PROGRESS_EVENT)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a checked address, with SNI and certificate checks for the URL's host name."""

    def __init__(self, checked: CheckedURL, timeout: float) -> None:
        super().__init__(checked.host, checked.port, timeout=timeout, context=ssl.create_default_context())
        self._address = checked.address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def http_post(checked: CheckedURL, headers: Mapping[str, str], body: bytes, timeout: float) -> int:
    """POST ``body`` to the checked address; return the status. Reads at most 64 KB of the answer."""
    connection: http.client.HTTPConnection
    if checked.scheme == "https":
        connection = _PinnedHTTPSConnection(checked, timeout)
    else:
        connection = http.client.HTTPConnection(checked.address, checked.port, timeout=timeout)
    try:
        default_port = 443 if checked.scheme == "https" else 80
        host_header = checked.host if checked.port == default_port else f"{checked.host}:{checked.port}"
        connection.request("POST", checked.path, body=body, headers={**headers, "Host": host_header})
        response = connection.getresponse()
        response.read(MAX_RESPONSE_BYTES)
        return response.status
    finally:
        connection.close()


@dataclass(order=True)
class Delivery:
    """One message to one receiver; ``attempt`` counts from 1."""

    due: float
    seq: int
    url: str = field(compare=False)
    msg_id: str = field(compare=False)
    body: bytes = field(compare=False)
    retry: bool = field(compare=False)
    attempt: int = field(default=1, compare=False)


class WebhookSender:
    """Queues signed webhook deliveries and sends them from one background thread.

    ``retry_delays``: the waits before the 2nd, 3rd… attempt of a final event (its length is the
    number of retries). ``progress_interval``: at most one progress webhook per job per this
    many seconds. ``max_pending`` bounds memory when receivers are down: beyond it, new
    progress events are dropped (finals still queue, up to twice the bound)."""

    def __init__(
        self,
        secret: str,
        *,
        guard: AddressGuard,
        post: Poster = http_post,
        timeout: float = 5.0,
        retry_delays: Sequence[float] = (1.0, 5.0, 30.0, 120.0, 600.0),
        progress_interval: float = 5.0,
        max_pending: int = 1000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._webhook = Webhook(secret)
        self.guard = guard
        self._post = post
        self.timeout = timeout
        self.retry_delays = tuple(retry_delays)
        self.progress_interval = progress_interval
        self.max_pending = max_pending
        self._monotonic = monotonic
        self._heap: list[Delivery] = []
        self._condition = threading.Condition()
        self._seq = itertools.count()
        self._last_progress: dict[str, float] = {}
        self._progress_seq: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._closed = False
        self._in_flight = 0
        #: (msg_id, attempt, status or error text) of the latest attempts, for logs and tests
        self.attempts: deque[tuple[str, int, int | str]] = deque(maxlen=1000)

    # ----------------------------------------------------------- producer side (the task)

    def send(self, url: str, job_id: str, view: Mapping[str, Any]) -> bool:
        """Queue the webhook for ``view`` (a job status view); False if throttled or dropped.

        Never raises and never blocks on the network."""
        state = str(view.get("state", ""))
        event = event_type_for(state)
        final = event != PROGRESS_EVENT
        now = self._monotonic()
        with self._condition:
            if self._closed:
                return False
            if final:
                self._last_progress.pop(job_id, None)
                self._progress_seq.pop(job_id, None)
                msg_id = f"msg_{job_id}_{event.split('.')[1]}"
                limit = self.max_pending * 2
            else:
                last = self._last_progress.get(job_id)
                if last is not None and now - last < self.progress_interval:
                    return False
                self._last_progress[job_id] = now
                seq = self._progress_seq[job_id] = self._progress_seq.get(job_id, 0) + 1
                msg_id = f"msg_{job_id}_progress_{seq}"
                limit = self.max_pending
            if len(self._heap) >= limit:
                log.warning("webhook for job %s dropped: %d deliveries pending", job_id, len(self._heap))
                return False
            payload = {"type": event, "timestamp": datetime.now(UTC).isoformat(), "data": dict(view)}
            body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
            heapq.heappush(self._heap, Delivery(now, next(self._seq), url, msg_id, body, retry=final))
            self._ensure_thread()
            self._condition.notify()
        return True

    def sign(self, msg_id: str, body: bytes, when: datetime | None = None) -> dict[str, str]:
        """The Standard Webhooks headers for one attempt (the timestamp is the attempt's)."""
        when = when or datetime.now(UTC)
        return {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": self._webhook.sign(msg_id, when, body.decode()),
        }

    def idle(self, timeout: float) -> bool:
        """Wait until nothing is pending or in flight (tests, shutdown); False on timeout."""
        deadline = self._monotonic() + timeout
        with self._condition:
            while self._heap or self._in_flight:
                remaining = deadline - self._monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread after at most ``timeout`` seconds; undelivered messages are logged."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._heap:
            log.warning("%d webhook deliveries abandoned at shutdown", len(self._heap))

    # ----------------------------------------------------------- the delivery thread

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="webhook-sender", daemon=True)
            self._thread.start()

    def _next(self) -> Delivery | None:
        with self._condition:
            while not self._closed:
                if self._heap:
                    wait = self._heap[0].due - self._monotonic()
                    if wait <= 0:
                        self._in_flight += 1
                        return heapq.heappop(self._heap)
                    self._condition.wait(min(wait, 1.0))
                else:
                    self._condition.wait(1.0)
            return None

    def _loop(self) -> None:
        while (delivery := self._next()) is not None:
            try:
                self._attempt(delivery)
            except Exception:  # the thread must survive any one delivery
                log.exception("webhook delivery %s failed unexpectedly", delivery.msg_id)
            finally:
                with self._condition:
                    self._in_flight -= 1
                    self._condition.notify_all()

    def _attempt(self, delivery: Delivery) -> None:
        outcome: int | str
        try:
            checked = self.guard.check(delivery.url)
        except BlockedAddressError as exc:
            self.attempts.append((delivery.msg_id, delivery.attempt, f"refused: {exc}"))
            log.warning("webhook %s not sent: %s", delivery.msg_id, exc)
            return  # the rules will not change between attempts
        try:
            outcome = self._post(checked, self.sign(delivery.msg_id, delivery.body), delivery.body, self.timeout)
        except (OSError, http.client.HTTPException) as exc:
            outcome = f"{exc.__class__.__name__}: {exc}"
        self.attempts.append((delivery.msg_id, delivery.attempt, outcome))
        if isinstance(outcome, int) and 200 <= outcome < 300:
            log.info("webhook %s delivered to %s (attempt %d)", delivery.msg_id, checked.host, delivery.attempt)
            return
        retry_left = delivery.retry and delivery.attempt <= len(self.retry_delays)
        log.warning(
            "webhook %s to %s failed (attempt %d: %s)%s",
            delivery.msg_id,
            checked.host,
            delivery.attempt,
            outcome,
            "; retrying" if retry_left else "; giving up",
        )
        if retry_left:
            delay = self.retry_delays[delivery.attempt - 1]
            with self._condition:
                delivery.due = self._monotonic() + delay
                delivery.attempt += 1
                heapq.heappush(self._heap, delivery)
