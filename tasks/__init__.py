"""Celery tasks: thin adapters around the framework-free job runner."""
