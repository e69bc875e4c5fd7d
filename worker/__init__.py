"""comfy-celery: run ComfyUI workflows on remote GPU pods from a Celery worker fleet."""
