"""The errors package keeps one public place: every class is named ``worker.comfyui.errors.<Class>``.

The classes live in one module per family, but stored results name them: Celery's JSON
results carry ``exc_module`` (a backend may switch on it, and a poller imports it to rebuild the
error) and pickles carry the module path. Both must stay ``worker.comfyui.errors``.
"""

from __future__ import annotations

import pickle
import pickletools

from celery import Celery

from worker.comfyui import errors as e


def _classes() -> list[type[e.ComfyUIError]]:
    return [*e.ALL_ERRORS, e.ComfyUITimeoutError]


def test_every_class_is_named_after_the_package() -> None:
    assert {cls.__name__: cls.__module__ for cls in _classes()} == {cls.__name__: "worker.comfyui.errors" for cls in _classes()}


def test_the_stored_celery_result_names_the_package() -> None:
    app = Celery("names", backend="cache+memory://", set_as_current=False)
    app.conf.result_serializer = "json"
    stored = app.backend.prepare_exception(e.OutputSaveError("x", failures=[]), "json")
    assert (stored["exc_module"], stored["exc_type"]) == ("worker.comfyui.errors", "OutputSaveError")


def test_a_pickle_names_the_package() -> None:
    opcodes = [arg for op, arg, _ in pickletools.genops(pickle.dumps(e.RedirectRefusedError("x"))) if isinstance(arg, str)]
    assert opcodes[:2] == ["worker.comfyui.errors", "RedirectRefusedError"]


def test_star_import_gives_every_public_name() -> None:
    namespace: dict[str, object] = {}
    exec("from worker.comfyui.errors import *", namespace)
    assert {cls.__name__ for cls in _classes()} | {"ALL_ERRORS", "TimeoutPhase"} <= set(namespace)
