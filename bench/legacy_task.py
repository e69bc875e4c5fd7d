"""The legacy polling task the short-jobs bench compares against (``celery -A bench.legacy_task``):
submit, then poll ``/history`` every 50 ms. No progress, cancel, re-attach, retries or health."""

import os
import time
import uuid

import requests
from celery import Celery

app = Celery("legacy", broker=os.environ["CELERY_BROKER_URL"], backend=os.environ["CELERY_BROKER_URL"])
app.conf.update(task_default_queue="legacy", task_acks_late=True, worker_prefetch_multiplier=1, worker_hijack_root_logger=False)
session = requests.Session()


@app.task(name="legacy.run")
def run(workflow: dict[str, object], server: str) -> dict[str, object]:
    prompt_id = str(uuid.uuid4())
    session.post(f"{server}/prompt", json={"prompt": workflow, "prompt_id": prompt_id}, timeout=30).raise_for_status()
    while True:
        history = session.get(f"{server}/history/{prompt_id}", timeout=30).json()
        if prompt_id in history:
            return {"prompt_id": prompt_id, "outputs": history[prompt_id]["outputs"]}
        time.sleep(0.05)
