"""The fleet's ComfyUI servers: one client per pod per process, and pod choice.

Clients are created lazily, after Celery's prefork pool has forked: nothing connects at import.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from worker.comfyui.errors import ComfyUIError, ConnectionFailedError
from worker.comfyui.pod_client import ComfyUIPodClient
from worker.comfyui.urls import ServerURL

__all__ = ["PodConfig", "PodPool"]

T = TypeVar("T")


@dataclass(frozen=True)
class PodConfig:
    """One ComfyUI server of the fleet."""

    name: str
    server: ServerURL = field(repr=False)

    @property
    def url(self) -> str:
        """The base URL as text (it carries no credential: :class:`ServerURL` refuses them)."""
        return self.server.base

    @property
    def safe_url(self) -> str:
        return self.server.redacted

    @property
    def queue(self) -> str:
        """The Celery queue of this pod when one queue per pod is used."""
        return f"comfyui.{self.name}"


class PodPool:
    def __init__(
        self,
        pods: Sequence[PodConfig],
        factory: Callable[[PodConfig], ComfyUIPodClient],
        logger: logging.Logger | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not pods:
            raise ValueError("a pod pool needs at least one pod")
        self.pods = tuple(pods)
        self._factory = factory
        self._clients: dict[str, ComfyUIPodClient] = {}
        self._lock = threading.Lock()
        self._log = logger or logging.getLogger(__name__)
        self._rng = rng
        # reused across calls: a pool of threads per pod choice would cost more than the choice
        self._executor: ThreadPoolExecutor | None = None

    def get(self, name: str) -> PodConfig:
        for pod in self.pods:
            if pod.name == name:
                return pod
        raise KeyError(f"unknown pod {name!r}; configured: {', '.join(p.name for p in self.pods)}")

    def client(self, pod: PodConfig) -> ComfyUIPodClient:
        with self._lock:
            if pod.name not in self._clients:
                self._clients[pod.name] = self._factory(pod)
            return self._clients[pod.name]

    def _load(self, pod: PodConfig) -> int | None:
        try:
            load = self.client(pod).rest.queue_remaining(quick=True)
            self.client(pod).shared.pod_answered()  # /prompt answered with exec_info: as good as a health check
            return load
        except ComfyUIError as exc:  # HTTPStatusError included
            self._log.warning("pod %s (%s) is not usable: %s", pod.name, pod.safe_url, exc)
            return None

    def loads(self) -> list[int | None]:
        """Every pod's ``queue_remaining`` in pod order (None: not usable), asked in parallel."""
        return self._on_every_pod(self._load)

    def least_loaded(self) -> PodConfig:
        """The healthy pod with the fewest queued prompts (``queue_remaining``).

        Ties are broken at random: jobs starting at the same instant see the same loads, and a
        fixed tie-break would send them all to the first pod. Every job starts with this check, so
        it is quick: a pod that does not answer at once within ``health_timeout`` is skipped."""
        if len(self.pods) == 1:
            return self.pods[0]
        loads = self._on_every_pod(self._load)
        healthy = [(load, self._rng(), index) for index, load in enumerate(loads) if load is not None]
        if not healthy:
            raise ConnectionFailedError(f"none of the {len(self.pods)} ComfyUI pods answered")
        return self.pods[min(healthy)[2]]

    def find_prompt(self, prompt_id: str) -> PodConfig | None:
        """The pod that has this prompt (queued, running or in history), after a redelivery;
        None only when every pod answered that it has not.

        A pod that cannot be asked may be running the prompt: submitting it elsewhere could run it
        twice. So when no pod has it and one did not answer, the location is unknown and this
        raises :class:`ConnectionFailedError` (a transport error: the task retries it with
        backoff, and fails with ``connection`` once its retries are spent, never submitting
        elsewhere meanwhile). All pods are asked at once: one slow or unreachable pod costs its
        own timeout, not the sum of every pod's."""

        def has_it(pod: PodConfig) -> bool | ComfyUIError:
            client = self.client(pod)
            try:
                return client.rest.get_history(prompt_id) is not None or client.rest.get_queue().contains(prompt_id)
            except ComfyUIError as exc:  # HTTPStatusError included
                self._log.warning("could not look for prompt %s on pod %s: %s", prompt_id, pod.name, exc)
                return exc

        found = self._on_every_pod(has_it)
        pod = next((pod for pod, here in zip(self.pods, found, strict=True) if here is True), None)
        unanswered = [p.name for p, here in zip(self.pods, found, strict=True) if isinstance(here, ComfyUIError)]
        if pod is None and unanswered:
            raise ConnectionFailedError(
                f"prompt {prompt_id} may be on pod {', '.join(unanswered)}, which did not answer: not submitting it elsewhere"
            )
        return pod

    def _on_every_pod(self, call: Callable[[PodConfig], T]) -> list[T]:
        """``call`` for every pod in parallel, results in pod order."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=len(self.pods), thread_name_prefix="pod-call")
            executor = self._executor
        return list(executor.map(call, self.pods))

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        for client in clients:
            client.close()
