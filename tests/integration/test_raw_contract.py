"""A backend in another language: Redis commands and JSON only (no Celery, none of our code on
the client side), against a real worker. What README's "From any language" section says."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from tests.conftest import slow_workflow
from tests.integration.celery_support import WorkerProcess, app_for, env_for
from tests.schema_support import check
from worker.simulator import ComfyUISimulator


def task_message(job_id: str, workflow: dict[str, Any], options: dict[str, Any], queue: str = "comfyui") -> dict[str, Any]:
    """The message as README documents it (Celery's message protocol 2, JSON body)."""
    body = [[workflow], {"options": options}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    return {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": "comfy.run_workflow",
            "id": job_id,
            "root_id": job_id,
            "parent_id": None,
            "group": None,
            "retries": 0,
            "eta": None,
            "expires": None,
            "timelimit": [None, None],
            "argsrepr": "[workflow]",
            "kwargsrepr": json.dumps({"options": options}),
            "origin": "raw-json-backend",
        },
        "properties": {
            "correlation_id": job_id,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }


def watch_raw(db: redis.Redis, job_id: str, until: tuple[str, ...], timeout: float = 20) -> list[dict[str, Any]]:
    """SUBSCRIBE celery-task-meta-<id>, then GET it once, then read what is published."""
    key = f"celery-task-meta-{job_id}"
    pubsub = db.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    pubsub.subscribe(key)
    records: list[dict[str, Any]] = []
    try:
        current = db.get(key)
        if current is not None:
            records.append(json.loads(current))
        deadline = time.monotonic() + timeout
        while not records or records[-1]["status"] not in until:
            assert time.monotonic() < deadline, [r["status"] for r in records]
            message = pubsub.get_message(timeout=1.0)
            if message is not None:
                records.append(json.loads(message["data"]))
        return records
    finally:
        pubsub.close()


def test_submit_watch_and_cancel_with_redis_commands_only(broker: str, sim: ComfyUISimulator, tmp_path: Path) -> None:
    env = env_for(broker, sim.url)
    worker = WorkerProcess(app_for(env), env, log_path=tmp_path / "worker.log")
    db = redis.Redis.from_url(broker)
    try:
        job_id = str(uuid.uuid4())
        message = task_message(job_id, slow_workflow(steps=40), {"job_type": "image_generation"})
        check("taskMessage", message)
        db.lpush("comfyui", json.dumps(message))
        records = watch_raw(db, job_id, until=("SUCCESS", "FAILURE"))
        assert records[-1]["status"] == "SUCCESS", (records[-1], worker.log()[-2000:])
        assert any(r["status"] == "PROGRESS" for r in records)
        for record in records:
            check("rawRecord", record)

        # cancel: SET the flag (a worker that starts the job later reads it) and PUBLISH it
        other = str(uuid.uuid4())
        db.lpush("comfyui", json.dumps(task_message(other, slow_workflow(steps=2000, salt=1), {})))
        running = watch_raw(db, other, until=("PROGRESS",))
        assert running[-1]["status"] == "PROGRESS"
        db.set(f"comfy-cancel:{other}", "1", ex=86400)
        db.publish(f"comfy-cancel:{other}", "1")
        final = watch_raw(db, other, until=("REVOKED", "SUCCESS", "FAILURE"))[-1]
        assert final["status"] == "REVOKED", final
        check("rawRecord", final)
    finally:
        worker.stop()
        db.close()
