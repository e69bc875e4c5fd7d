"""The normalised job view of ``GET /api/jobs`` and ``/api/jobs/{id}`` (ComfyUI 0.6.0+)."""

from __future__ import annotations

from typing import Any

from worker.simulator.engine import Engine

__all__ = ["job_view"]


def job_view(engine: Engine, prompt_id: str, detail: bool) -> dict[str, Any] | None:
    """One prompt as ``/api/jobs`` shows it (protocol §8.9), or None when unknown."""
    entry = engine.history.get(prompt_id)
    if entry is not None:
        number, _, prompt, extra, _ = entry["prompt"]
        messages = {m[0]: m[1] for m in entry["status"]["messages"]}
        failed = "execution_error" in messages or "execution_interrupted" in messages
        job: dict[str, Any] = {
            "id": prompt_id,
            "status": "failed" if failed else "completed",
            "priority": number,
            "create_time": extra.get("create_time"),
        }
        if "execution_start" in messages:
            job["execution_start_time"] = messages["execution_start"].get("timestamp")
        end = messages.get("execution_success") or messages.get("execution_error") or messages.get("execution_interrupted")
        if end and end.get("timestamp") is not None:
            job["execution_end_time"] = end["timestamp"]
        if "execution_error" in messages:
            job["execution_error"] = messages["execution_error"]
        job["outputs_count"] = sum(len(v) for out in entry["outputs"].values() for v in out.values() if isinstance(v, list))
        if detail:
            job.update(
                {"outputs": entry["outputs"], "execution_status": entry["status"], "workflow": {"prompt": prompt, "extra_data": extra}}
            )
        return job
    queued = ([engine.running] if engine.running else []) + engine.pending()
    for item in queued:
        if item.prompt_id == prompt_id:
            job = {
                "id": prompt_id,
                "status": "in_progress" if item is engine.running else "pending",
                "priority": item.number,
                "create_time": item.extra_data.get("create_time"),
                "outputs_count": 0,
            }
            if detail:
                job["workflow"] = {"prompt": item.prompt, "extra_data": item.extra_data}
            return job
    return None
