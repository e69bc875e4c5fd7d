"""Settings read from the environment, in one place, and the wiring from them to fleet objects.

May import the ComfyUI library and the fleet layer (to build their objects); never Celery,
``tasks`` or the app layer. Only ``tasks`` and the app layer import it.
"""
