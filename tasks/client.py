"""The web-backend client: submit a workflow, read, watch, wait for and cancel its job.

A Django/FastAPI/Flask backend imports this module with Celery and redis-py only: it never
pulls in the worker's HTTP and WebSocket stack (a test checks ``sys.modules``), so it builds
its own bare Celery app (:meth:`ComfyClient.from_url`) instead of importing ``tasks.app``.

* :meth:`~ComfyClient.status` is one read of the stored record, so a state and its meta
  always belong together (``result.state`` then ``result.info`` are two reads: a task ending
  between them pairs PROGRESS with the final result).
* :meth:`~ComfyClient.watch` does not poll: Celery's Redis result backend publishes every
  record it stores (each PROGRESS update and the final state) on a channel named like its key,
  ``celery-task-meta-<id>``; watch subscribes first, then reads the current state once (so
  nothing between the two is missed), then yields each new record as it is published. It ends
  with the final state, or raises :class:`WatchTimeout` at its deadline.
* :meth:`~ComfyClient.cancel` works whatever pool the workers run: it sets the Redis key
  ``comfy-cancel:<id>`` (each worker process reads its jobs' flags every 0.25 s; it is also
  published on the channel of the same name), and revokes the task (a worker then discards it if it is still queued, and a prefork
  worker's pool process gets SIGUSR1 at once).

The JSON contract (this module's views, the raw records, the webhook body) is documented in
README and ``tasks/schema/``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, TypedDict

from celery import Celery
from celery.backends.redis import RedisBackend
from celery.result import AsyncResult
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tasks.options import TaskOptions
from tasks.priority import NEW_JOB_PRIORITY
from worker.comfyui.errors import ComfyUIError
from worker.comfyui.workflow import validate_workflow

__all__ = [
    "CANCEL_KEY",
    "FINAL_STATES",
    "PREVIEW_KEY",
    "TASK_NAME",
    "ComfyClient",
    "JobView",
    "WatchTimeout",
    "enqueue_workflow",
    "job_status",
    "task_state",
    "view_of",
]

TASK_NAME = "comfy.run_workflow"  # = tasks.workflow.TASK_NAME (a test checks); not imported: it pulls the worker in
CANCEL_KEY = "comfy-cancel:{}"
PREVIEW_KEY = "comfy-preview:{}"  # = worker.fleet.previews.PREVIEW_KEY (a test checks)
FINAL_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
CLIENT_CONF: dict[str, Any] = {
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "result_accept_content": ["json"],
    "broker_connection_retry_on_startup": True,
}


class JobView(TypedDict, total=False):
    """One job as JSON: ``state`` and, by state, ``progress`` (PROGRESS meta), ``result``
    (SUCCESS) or ``error`` (FAILURE, REVOKED: ``code``, ``message`` and details)."""

    task_id: str
    state: str
    progress: dict[str, Any]
    result: Any
    error: dict[str, Any]


class WatchTimeout(TimeoutError):
    """The job did not end before the watch's or wait's deadline (it goes on running)."""

    def __init__(self, job_id: str, timeout: float, last: JobView) -> None:
        super().__init__(f"job {job_id} did not end within {timeout:g} s (last state {last.get('state')})")
        self.job_id = job_id
        self.last = last


def _error_view(info: Any) -> dict[str, Any]:
    """The structured error: ours carry ``code`` in ``args[1]`` even when Celery rebuilt them
    as a generic exception (our module not imported by the reading process)."""
    if isinstance(info, ComfyUIError):
        return info.to_dict()
    fields = info.args[1] if isinstance(info, BaseException) and len(info.args) > 1 else None
    if isinstance(fields, dict) and isinstance(fields.get("code"), str):
        return dict(fields)
    return {"code": "task_error", "message": repr(info)}


def view_of(task_id: str, state: str, info: Any) -> JobView:
    """The JSON view of one stored record (state and decoded result)."""
    view: JobView = {"task_id": task_id, "state": state}
    if state == "PROGRESS" and isinstance(info, dict):
        view["progress"] = info
    elif state == "SUCCESS":
        view["result"] = info
    elif state == "FAILURE":
        view["error"] = _error_view(info)
    elif state == "REVOKED":
        view["error"] = {"code": "cancelled", "message": str(info)}
    return view


def task_state(result: AsyncResult) -> tuple[str, Any]:  # type: ignore[type-arg]
    """(state, info) from one read of the result backend."""
    meta = result.backend.get_task_meta(result.id)
    return str(meta["status"]), meta.get("result")  # custom states such as PROGRESS are outside Celery's typed set


def job_status(result: AsyncResult) -> dict[str, Any]:  # type: ignore[type-arg]
    """A JSON view of a task for a poller: state, PROGRESS meta, result or structured error."""
    state, info = task_state(result)
    return dict(view_of(str(result.id), state, info))


def enqueue_workflow(
    celery: Celery,
    workflow: Mapping[str, Any],
    *,
    job_type: str = "image_generation",
    pod: str | None = None,
    timeout: float | None = None,
    queue: str | None = None,
    task_id: str | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> AsyncResult:  # type: ignore[type-arg]
    """Check the workflow, then enqueue it; the task id is also the ComfyUI prompt id."""
    options: dict[str, Any] = {"job_type": job_type}
    if pod is not None:
        options["pod"] = pod
    if timeout is not None:
        options["timeout"] = timeout
    TaskOptions.parse(options)  # NaN, infinity or a wrong type fail here, not on a worker
    result: AsyncResult = celery.send_task(  # type: ignore[type-arg]
        TASK_NAME,
        args=[validate_workflow(workflow)],
        kwargs={"options": options, **({"inputs": dict(inputs)} if inputs else {})},
        queue=queue,
        task_id=task_id,
        priority=celery.conf.task_default_priority,  # behind retries, with Redis (tasks/priority.py)
    )
    return result


class _Channel:
    """One watcher's subscription to ``celery-task-meta-<id>``, re-made after a dropped connection."""

    def __init__(self, backend: RedisBackend, job_id: str) -> None:
        self.backend = backend
        self.job_id = job_id
        self.key = backend.get_key_for_task(job_id)
        self.pubsub: Any = None
        self.failures = 0

    def open(self, client: ComfyClient) -> JobView:
        """Subscribe, then read the record: a change between the two is not lost."""
        self.close()
        self.pubsub = self.backend.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(self.key)
        return client.status(self.job_id)

    def next(self, client: ComfyClient, timeout: float, stop: threading.Event | None) -> JobView | None:
        """The next published record within ``timeout``, or None; after a dropped connection,
        the record as re-read once subscribed again (backing off up to 5 s per attempt)."""
        try:
            message = self.pubsub.get_message(timeout=timeout)
            self.failures = 0
        except (RedisConnectionError, RedisTimeoutError):
            self.failures += 1
            (stop or threading.Event()).wait(min(timeout, 0.2 * 2**self.failures, 5.0))
            try:
                return self.open(client)
            except (RedisConnectionError, RedisTimeoutError):
                return None  # the deadline bounds the attempts
        if message is None or message.get("type") != "message":
            return None
        meta = self.backend.decode_result(message["data"])
        return view_of(self.job_id, str(meta["status"]), meta.get("result"))

    def close(self) -> None:
        if self.pubsub is not None:
            with contextlib.suppress(RedisConnectionError, RedisTimeoutError):  # closing a dead connection
                self.pubsub.close()
            self.pubsub = None


class ComfyClient:
    """What a web backend holds: one per process, thread-safe (Celery and redis-py pools).

    ``queue``: where jobs go (the workers' ``COMFYUI_QUEUE``); ``routes`` sends a job type or a
    pod elsewhere (``{"lora_training": "comfyui.train", "pod:b": "comfyui.b"}``), so callers
    never name a queue themselves."""

    def __init__(self, celery: Celery, *, queue: str = "comfyui", routes: Mapping[str, str] | None = None) -> None:
        self.celery = celery
        self.queue = queue
        self.routes = dict(routes or {})

    @classmethod
    def from_url(
        cls, broker_url: str, *, backend_url: str | None = None, queue: str = "comfyui", routes: Mapping[str, str] | None = None
    ) -> ComfyClient:
        """A client with its own bare Celery app (JSON only, the backend defaults to the broker)."""
        celery = Celery("comfy_client", broker=broker_url, backend=backend_url or broker_url, set_as_current=False)
        celery.conf.update(CLIENT_CONF)
        if broker_url.startswith(("redis://", "rediss://", "redis+socket://")):
            celery.conf.task_default_priority = NEW_JOB_PRIORITY  # behind retries, as the workers' own app sends (tasks/priority.py)
        return cls(celery, queue=queue, routes=routes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ComfyClient:
        """Read the workers' own variables: ``CELERY_BROKER_URL`` (or ``REDIS_URL``),
        ``CELERY_RESULT_BACKEND`` and ``COMFYUI_QUEUE``, with the workers' defaults."""
        env = os.environ if env is None else env
        redis_url = env.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
        broker = env.get("CELERY_BROKER_URL") or redis_url
        return cls.from_url(broker, backend_url=env.get("CELERY_RESULT_BACKEND") or broker, queue=env.get("COMFYUI_QUEUE") or "comfyui")

    def close(self) -> None:
        self.celery.close()

    # ------------------------------------------------------------------ submit and read

    def queue_for(self, options: Mapping[str, Any]) -> str:
        """The queue of a job: its pod's route, else its job type's, else the default."""
        pod = options.get("pod")
        if pod is not None and f"pod:{pod}" in self.routes:
            return self.routes[f"pod:{pod}"]
        return self.routes.get(str(options.get("job_type", "image_generation")), self.queue)

    def submit(
        self,
        workflow: Mapping[str, Any],
        *,
        inputs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        job_id: str | None = None,
    ) -> str:
        """Check and enqueue ``workflow``; return the job id (also ComfyUI's prompt id).

        ``options`` as README documents (``job_type``, ``pod``, ``timeout``, ``webhook_url``,
        ``webhook_progress``, ``previews``); ``inputs`` maps an input name to ``{"url": …}``,
        ``{"base64": …}`` or ``{"store_key": …}``. Raises ``WorkflowValidationError`` at once
        for a malformed workflow or options (a refused webhook address only on the worker)."""
        opts = dict(options or {})
        TaskOptions.parse(opts)  # a wrong option fails here, not as the job's FAILURE
        kwargs: dict[str, Any] = {"options": opts}
        if inputs:
            kwargs["inputs"] = dict(inputs)
        result = self.celery.send_task(
            TASK_NAME, args=[validate_workflow(workflow)], kwargs=kwargs, queue=self.queue_for(opts), task_id=job_id
        )
        return str(result.id)

    def status(self, job_id: str) -> JobView:
        """The job as JSON, from one read (``PENDING`` also for an unknown id: Celery cannot tell)."""
        meta = self.celery.backend.get_task_meta(job_id)
        return view_of(job_id, str(meta["status"]), meta.get("result"))

    # ------------------------------------------------------------------ cancel

    def cancel(self, job_id: str, *, flag_ttl: int = 86400) -> None:
        """Ask for the job to stop; it ends REVOKED (a job that already ended keeps its state).

        The flag reaches a running task on any pool (threads, solo, prefork); the revoke stops
        a queued one before it starts. The prompt is then deleted from the pod's queue or
        interrupted by the worker."""
        client = self._redis()
        if client is not None:
            key = CANCEL_KEY.format(job_id)
            with client.pipeline() as pipe:
                pipe.set(key, "1", ex=flag_ttl)
                pipe.publish(key, "1")
                pipe.execute()
        self.celery.control.revoke(job_id, terminate=True, signal="SIGUSR1")

    def preview(self, job_id: str) -> bytes | None:
        """The job's latest sampler preview (JPEG/PNG bytes) while it runs with previews on;
        the PROGRESS meta's ``preview`` says which step it shows."""
        client = self._redis()
        if client is None:
            return None
        value = client.get(PREVIEW_KEY.format(job_id))
        return bytes(value) if value is not None else None

    # ------------------------------------------------------------------ watch and wait

    def watch(
        self, job_id: str, *, timeout: float = 3600.0, stop: threading.Event | None = None, refresh: float = 15.0
    ) -> Iterator[JobView]:
        """Yield the job's view now and on every change, ending with its final state.

        Blocks on the backend's pub/sub channel (no polling); ``refresh`` re-reads the record
        after that many silent seconds all the same (a lost message cannot hang a watcher). A
        dropped Redis connection is re-subscribed (then the record re-read) until the deadline.
        ``stop`` ends the iteration early (checked at least every second); the deadline raises
        :class:`WatchTimeout`."""
        deadline = time.monotonic() + timeout
        backend = self.celery.backend
        if not isinstance(backend, RedisBackend):  # fall back to reading every second
            yield from self._poll(job_id, deadline, timeout, stop)
            return
        channel = _Channel(backend, job_id)
        try:
            view = channel.open(self)
            last: JobView | None = None
            silent_since = time.monotonic()
            while True:
                if view != last:
                    yield view
                    last = view
                if view["state"] in FINAL_STATES or (stop is not None and stop.is_set()):
                    return
                now = time.monotonic()
                if now >= deadline:
                    raise WatchTimeout(job_id, timeout, view)
                update = channel.next(self, min(deadline - now, 1.0), stop)
                if update is not None:
                    view, silent_since = update, time.monotonic()
                elif time.monotonic() - silent_since >= refresh:
                    view, silent_since = self.status(job_id), time.monotonic()
        finally:
            channel.close()

    def wait(self, job_id: str, timeout: float) -> JobView:
        """Block until the job ends; return its final view (:class:`WatchTimeout` after ``timeout``)."""
        final: JobView = {"task_id": job_id, "state": "PENDING"}
        for view in self.watch(job_id, timeout=timeout):
            final = view
        return final

    # ------------------------------------------------------------------ internals

    def _redis(self) -> Any:
        """The result backend's redis-py client, or None for another backend."""
        backend = self.celery.backend
        return backend.client if isinstance(backend, RedisBackend) else None

    def _poll(self, job_id: str, deadline: float, timeout: float, stop: threading.Event | None) -> Iterator[JobView]:
        last: JobView | None = None
        while True:
            view = self.status(job_id)
            if view != last:
                yield view
                last = view
            if view["state"] in FINAL_STATES or (stop is not None and stop.is_set()):
                return
            if time.monotonic() >= deadline:
                raise WatchTimeout(job_id, timeout, view)
            (stop or threading.Event()).wait(min(1.0, max(0.0, deadline - time.monotonic())))
