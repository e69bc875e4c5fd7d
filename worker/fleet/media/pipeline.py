"""``MediaPipeline``: the two calls a job adapter makes around a run.

* :meth:`prepare_inputs` before submitting: check the references, get every input (URL, base64,
  store), sniff it, upload it to the chosen pod, and return the rewritten workflow;
* :meth:`store_outputs` after success: stream every file into the output store and return the
  result's ``media`` section. A failure is a :class:`StorageError` after in-process retries
  with backoff; the prompt is never resubmitted for it (its history is the source, and a
  retried task re-attaches to it).

Optionally (``cleanup="history"``) the prompt's history entry is deleted from the pod once its
files are stored: ComfyUI has no route that deletes files, so the files themselves stay until
the pod is recycled or its output directory is cleaned by the operator.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from worker.comfyui.clock import Clock, SystemClock
from worker.comfyui.errors import ComfyUIError
from worker.comfyui.rest_client import ComfyUIRestClient
from worker.comfyui.results import WorkflowResult
from worker.fleet.media.fetch import URLFetcher
from worker.fleet.media.inputs import parse_inputs, resolve_input, upload_inputs
from worker.fleet.media.outputs import OutputPolicy, output_key, store_file, with_retries
from worker.fleet.media.refs import check_references, rewrite_references
from worker.fleet.media.store import OutputStore

__all__ = ["MediaPipeline", "MediaSettings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MediaSettings:
    outputs: OutputPolicy = field(default_factory=OutputPolicy)
    store_attempts: int = 4
    store_backoff: float = 1.0
    cleanup: Literal["none", "history"] = "none"


class MediaPipeline:
    def __init__(
        self,
        store: OutputStore | None,
        fetcher: URLFetcher,
        settings: MediaSettings | None = None,
        *,
        clock: Clock | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.settings = settings or MediaSettings()
        self._clock = clock or SystemClock()
        self._log = logger or log

    def prepare_inputs(
        self,
        workflow: Mapping[str, Any],
        inputs: Mapping[str, Any] | None,
        client: ComfyUIRestClient,
        task_id: str,
        *,
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        """The workflow to submit; validation errors come before any upload or submission."""
        sources = parse_inputs(inputs)
        check_references(workflow, {s.name for s in sources})
        if not sources:
            return dict(workflow)
        names: dict[str, str] = {}
        for source in sources:  # one input in memory at a time
            names.update(upload_inputs(client, [resolve_input(source, fetcher=self.fetcher, store=self.store, cancel=cancel)], task_id))
        self._log.info("task %s: uploaded %d input(s) to %s", task_id, len(names), client.server_url)
        return rewrite_references(workflow, names)

    def store_outputs(self, client: ComfyUIRestClient, result: WorkflowResult, *, cancel: threading.Event | None = None) -> dict[str, Any]:
        """``{"media": {"store": url, "files": [...]}}``, or ``{}`` when no store is configured."""
        store = self.store
        if store is None:
            return {}
        entries: list[dict[str, Any]] = []
        per_node: dict[str, int] = {}
        for item in result.files:
            if item.kind == "text":
                entries.append({"node_id": item.node_id, "kind": "text", "text": item.text})
                continue
            if not item.filename:
                continue
            index = per_node.get(item.node_id, 0)
            per_node[item.node_id] = index + 1
            key = output_key(result.prompt_id, item, index)
            entries.append(
                with_retries(
                    lambda item=item, key=key: store_file(client, store, item, key, self.settings.outputs, cancel=cancel),  # type: ignore[misc]
                    attempts=self.settings.store_attempts,
                    backoff=self.settings.store_backoff,
                    sleep=self._clock.sleep,
                    cancel=cancel,
                    key=key,
                )
            )
        if self.settings.cleanup == "history":
            self._forget(client, result.prompt_id)
        return {"media": {"store": store.url, "files": entries}}

    def _forget(self, client: ComfyUIRestClient, prompt_id: str) -> None:
        try:
            client.http.request("POST", "/history", json_body={"delete": [prompt_id]}, idempotent=True)
        except ComfyUIError as exc:  # the files are stored: a pod that forgets later is harmless
            self._log.warning("could not delete history entry %s on %s: %s", prompt_id, client.server_url, exc)
