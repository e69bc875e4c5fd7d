"""comfy-celery: run ComfyUI workflows on remote GPU pods from a Celery worker fleet.

One folder per layer; imports go one way only (``tests/unit/test_layers.py`` enforces it)::

    worker/comfyui/    the ComfyUI library: protocol, errors, clock, clients, progress
    worker/simulator/  a ComfyUI 0.8 simulator (imports only worker.comfyui.protocol)
    worker/fleet/      job runner, pods, analytics, outputs (imports the library; never Celery)
    config/            settings from the environment, and the wiring from settings to fleet objects
    tasks/             the Celery adapter: the app and the comfy.run_workflow task
    worker/app/        command line, demo, bootstrap, local Redis (imports any layer)
"""
