"""The ComfyUI layer: protocol, errors and clients. It never imports Celery or reads the environment."""
