"""The job types a task may name (``options.job_type``): a module of its own so that the web
client can check options without importing the job runner and its HTTP/WebSocket stack."""

from __future__ import annotations

__all__ = ["JOB_TYPES"]

JOB_TYPES = ("image_generation", "lora_training", "face_swap")
