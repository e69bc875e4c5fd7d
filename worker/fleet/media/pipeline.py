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

import json
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
from worker.fleet.media.outputs import OutputPolicy, output_key, store_file, task_key_part, with_retries
from worker.fleet.media.refs import check_references, rewrite_references
from worker.fleet.media.store import OutputStore

__all__ = ["MediaPipeline", "MediaSettings", "manifest_key"]

log = logging.getLogger(__name__)
_MANIFEST_LIMIT = 64 * 1024 * 1024  # inline base64 included


def manifest_key(task_id: str) -> str:
    return f"outputs/{task_key_part(task_id)}/result.json"


def _without_presigned(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Presigned URLs expire: the manifest keeps everything else and :meth:`recall` signs anew."""
    return {k: v for k, v in entry.items() if k != "presigned_url"}


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

    def store_outputs(
        self,
        client: ComfyUIRestClient,
        result: WorkflowResult,
        *,
        cancel: threading.Event | None = None,
        also: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``{"media": {"store": url, "files": [...]}}``, or ``{}`` when no store is configured.

        The whole result (``result`` + ``also`` + media) is then kept in the store as the task's
        manifest, before any cleanup on the pod: a redelivery that finds it (:meth:`recall`)
        answers from it, where the pod might have forgotten the prompt and would run it again."""
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
        media = {"media": {"store": store.url, "files": entries}}
        kept = {**result.to_dict(), **(also or {}), "media": {"store": store.url, "files": [_without_presigned(e) for e in entries]}}
        with_retries(
            lambda: store.put_bytes(manifest_key(result.prompt_id), json.dumps(kept).encode(), "application/json"),
            attempts=self.settings.store_attempts,
            backoff=self.settings.store_backoff,
            sleep=self._clock.sleep,
            cancel=cancel,
            key=manifest_key(result.prompt_id),
        )
        if self.settings.cleanup == "history":
            self._forget(client, result.prompt_id)
        return media

    def recall(self, task_id: str) -> dict[str, Any] | None:
        """The manifest of a task whose outputs were all stored (presigned URLs made afresh), or None."""
        if self.store is None:
            return None
        raw = self.store.read_bytes(manifest_key(task_id), _MANIFEST_LIMIT)
        if raw is None:
            return None
        try:
            manifest = json.loads(raw)
            files = manifest["media"]["files"]
        except (ValueError, KeyError, TypeError):
            return None  # damaged: run (re-attach) again, which rewrites it
        for entry in files:
            if isinstance(entry, dict) and "key" in entry:
                entry["presigned_url"] = self.store.presign(entry["key"], self.settings.outputs.presign_seconds)
        return manifest if isinstance(manifest, dict) else None

    def _forget(self, client: ComfyUIRestClient, prompt_id: str) -> None:
        try:
            client.http.request("POST", "/history", json_body={"delete": [prompt_id]}, idempotent=True)
        except ComfyUIError as exc:  # the files are stored: a pod that forgets later is harmless
            self._log.warning("could not delete history entry %s on %s: %s", prompt_id, client.server_url, exc)
