"""The Celery adapter: the app (``celery -A tasks.app``), the ``comfy.run_workflow`` task and a
client for enqueuing and reading tasks.

The only place besides the app layer that imports Celery. May import ``config``, the fleet
layer and the ComfyUI library; never the app layer or the simulator.
"""
