"""The fleet layer: what running many ComfyUI jobs over many pods needs beyond one client.

The job runner (one workflow, throttled progress, analytics events), the pod pool and pod
choice, analytics sinks and output saving. May import: the ComfyUI library (``worker.comfyui``)
and itself. Never Celery, never ``config`` or the environment: its objects are built from
plain values (``config.wiring`` builds them from settings), so any queue could drive it.
"""
