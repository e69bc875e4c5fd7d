"""Runnable example apps built on comfy-celery (may import any layer)."""
