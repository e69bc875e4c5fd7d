"""What the command line checks before and while it talks to the fleet, so that it fails fast
with one line instead of retrying for 20 s and ending in a traceback.

* :func:`check_broker`: the broker (and a separate result backend) answer within seconds;
* :func:`find_queued`: where a PENDING task id sits in a Redis broker's queues, if anywhere
  (Celery reads an unknown id and a queued one alike as PENDING);
* :class:`QueueWatch`: while a task stays PENDING, which workers consume its queue; none for a
  while means nobody will ever take it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import redis
from celery import Celery

from config.settings import Settings
from worker.comfyui.urls import redact_url

__all__ = ["QUEUE_SCAN_CAP", "BrokerUnreachableError", "QueueWatch", "check_broker", "find_queued", "url_source"]

#: At most this many messages are read per queue when looking a task id up.
QUEUE_SCAN_CAP = 10_000


class BrokerUnreachableError(RuntimeError):
    """The broker or the result backend did not answer; the message says which URL and what to do."""


def url_source(env: Mapping[str, str]) -> str:
    """Which variable the broker URL came from, for messages that tell the user what to change."""
    for name in ("CELERY_BROKER_URL", "REDIS_URL"):
        if env.get(name, "").strip():
            return name
    return "the default; set REDIS_URL or CELERY_BROKER_URL"


def _ping_redis(url: str, timeout: float) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()


def check_broker(app: Celery, settings: Settings, env: Mapping[str, str], *, timeout: float = 3.0) -> None:
    """Raise :class:`BrokerUnreachableError` unless the broker and the result backend answer within ``timeout``."""
    source = url_source(env)
    targets = [("broker", settings.broker_url, source)]
    if settings.result_backend != settings.broker_url:
        targets.append(("result backend", settings.result_backend, "CELERY_RESULT_BACKEND"))
    for what, url, variable in targets:
        try:
            if urlsplit(url).scheme in ("redis", "rediss", "redis+socket"):
                _ping_redis(url, timeout)
            elif what == "broker":
                with app.connection_for_write() as connection:
                    connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=max(1, round(timeout)))
        except Exception as exc:  # noqa: BLE001 - any failure to connect means the same to the user
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
            raise BrokerUnreachableError(
                f"cannot reach the {what} at {redact_url(url)} ({variable}): {reason}. "
                f"Start it, or point {variable if variable.isupper() else 'REDIS_URL'} at a running one."
            ) from None


#: kombu's Redis priority steps (its default), each a list of its own
_PRIORITY_STEPS = (0, 3, 6, 9)


def find_queued(settings: Settings, task_id: str, queues: Iterable[str], *, cap: int = QUEUE_SCAN_CAP) -> tuple[str, int] | None:
    """(queue, position from the head, 0 = next) of ``task_id`` in a Redis broker, or None.

    Kombu's Redis transport keeps a queue as a list (pushed left, popped right) of JSON messages
    whose ``headers.id`` is the task id, one list per priority step (``queue`` for 0, then
    ``queue\x06\x163`` …, served in that order: new jobs are at 3, tasks/priority.py). Only the
    last ``cap`` entries of each list are read."""
    if not settings.broker_is_redis:
        return None
    client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=3, socket_timeout=5)
    try:
        for queue in dict.fromkeys(queues):
            ahead = 0
            for key in (queue, *(f"{queue}\x06\x16{step}" for step in _PRIORITY_STEPS[1:])):
                entries = client.lrange(key, -cap, -1)
                for position, raw in enumerate(reversed(entries)):
                    if _message_id(raw) == task_id:
                        return queue, ahead + position
                ahead += len(entries)
    finally:
        client.close()
    return None


def _message_id(raw: bytes | str) -> str | None:
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):  # anyone who can write to the queue can nest a message 100,000 deep
        return None
    headers = message.get("headers") if isinstance(message, dict) else None
    value = headers.get("id") if isinstance(headers, dict) else None
    return value if isinstance(value, str) else None


Inspect = Callable[[], Mapping[str, list[str]]]


def active_queues(app: Celery, timeout: float = 1.0) -> dict[str, list[str]]:
    """Every worker that answers within ``timeout``, with the queues it consumes."""
    replies: dict[str, Any] = app.control.inspect(timeout=timeout).active_queues() or {}
    return {worker: [str(q.get("name")) for q in queues or []] for worker, queues in replies.items()}


class QueueWatch:
    """Called while a task is PENDING: says once who consumes its queue, and gives up when
    nobody has for ``grace`` seconds (the task would wait forever, silently)."""

    def __init__(
        self,
        queue: str,
        inspect: Inspect,
        *,
        grace: float = 10.0,
        every: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        say: Callable[[str], None] = print,
    ) -> None:
        self.queue = queue
        self._inspect = inspect
        self._grace = grace
        self._every = every
        self._clock = clock
        self._say = say
        self._started = clock()
        self._next = self._started
        self._told = False

    def __call__(self) -> str | None:
        """None to keep waiting, or the message to stop with."""
        now = self._clock()
        if now < self._next:
            return None
        self._next = now + self._every
        workers = self._inspect()
        seen = ", ".join(f"{name} [{', '.join(queues)}]" for name, queues in sorted(workers.items())) or "none"
        if any(self.queue in queues for queues in workers.values()):
            if not self._told:
                self._say(f"queued on {self.queue!r}: waiting for a free worker (workers: {seen})")
                self._told = True
            self._started = now  # someone will take it: no give-up timer
            return None
        if now - self._started < self._grace:
            return None
        return (
            f"no worker consumes queue {self.queue!r} (workers seen: {seen}); the task stays queued. "
            f"Start one with `celery -A tasks.app worker -Q {self.queue}`"
        )
