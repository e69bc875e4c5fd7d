"""The app layer: the command line (``python3 -m worker``), the demo and its tooling.

The CLI, the demo, following a task with a progress bar, the command line's broker and queue
checks (``preflight``), the Flower launcher, a private redis-server, child-process handling and
the first-run bootstrap. May import every layer: the Celery adapter (``tasks``),
``config``, the fleet, the ComfyUI library and the simulator. Nothing imports it. Importing this
package must stay standard-library only: ``bootstrap`` runs before any dependency is installed.
"""
