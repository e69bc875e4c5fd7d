"""Node durations shaped like a real GPU pod's, for benches of the progress time estimate.

With the default :class:`~worker.simulator.engine.SimulatorTiming` every node takes the same
time and only samplers have steps; on a real pod a checkpoint load takes seconds, the first
text encoder, sampler and VAE after a load wait for their model to reach the GPU, a sampler's
step time grows with the resolution and the batch, and an empty latent takes a millisecond.
:class:`RealisticTiming` reproduces that (SD 1.5 on a mid-range GPU, times ``scale``), with a
few percent of seeded jitter, and remembers which models are on the "GPU": a rerun is warm,
a reloaded checkpoint or ``POST /free`` makes the next run cold again.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Protocol

from worker.simulator.nodes import SimImage, SimLatent

__all__ = ["RealisticTiming", "TimingProfile"]

BASE_PIXELS = 512 * 512


class TimingProfile(Protocol):
    def durations(self, class_type: str, inputs: Mapping[str, Any]) -> tuple[float, float | None]:
        """(seconds before the first step, or the whole node without steps; seconds per step or None)."""
        ...

    def unload(self) -> None:
        """Models leave the GPU (``POST /free``)."""
        ...


def _area(*values: Any) -> float:
    """Pixels x batch of the first latent or image among ``values``, relative to 512 x 512."""
    for value in values:
        if isinstance(value, SimImage | SimLatent):
            return value.width * value.height * max(1, value.batch) / BASE_PIXELS
    return 64 * 64 / BASE_PIXELS


class RealisticTiming:
    """Seconds per node class; see the module docstring. Used on the simulator's loop only."""

    def __init__(self, *, scale: float = 1.0, jitter: float = 0.03, seed: int = 0) -> None:
        self.scale = scale
        self.jitter = jitter
        self._random = random.Random(seed)
        self._on_gpu: set[str] = set()

    def unload(self) -> None:
        self._on_gpu.clear()

    def _load(self, handle: Any, seconds: float) -> float:
        """``seconds`` the first time a model handle is used since it was (re)loaded, else 0."""
        if not isinstance(handle, str) or handle in self._on_gpu:
            return 0.0
        self._on_gpu.add(handle)
        return seconds

    def _noisy(self, seconds: float) -> float:
        return seconds * self.scale * (1.0 + self._random.uniform(-self.jitter, self.jitter))

    def durations(self, class_type: str, inputs: Mapping[str, Any]) -> tuple[float, float | None]:
        fixed, step = self._base(class_type, inputs)
        return self._noisy(fixed), None if step is None else self._noisy(step)

    def _base(self, class_type: str, inputs: Mapping[str, Any]) -> tuple[float, float | None]:
        if class_type == "CheckpointLoaderSimple":
            name = str(inputs.get("ckpt_name", ""))
            self._on_gpu -= {f"{kind}:{name}" for kind in ("model", "clip", "vae")}  # new weights: cold again
            return (5.0 if "xl" in name else 2.5), None
        if class_type == "CLIPTextEncode":
            return 0.02 + self._load(inputs.get("clip"), 0.6), None
        if class_type == "KSampler":
            area = _area(inputs.get("latent_image"))
            return 0.08 + self._load(inputs.get("model"), 1.2), max(0.01, 0.05 * area**1.15)
        if class_type == "VAEDecode":
            return self._load(inputs.get("vae"), 0.3) + 0.1 * _area(inputs.get("samples")), None
        fixed, per_image = _PLAIN.get(class_type, (0.01, 0.0))
        return fixed + per_image * _area(*inputs.values()), None


#: the other classes: (fixed seconds, seconds per 512 x 512 image)
_PLAIN: dict[str, tuple[float, float]] = {
    "EmptyLatentImage": (0.002, 0.0),
    "EmptyImage": (0.005, 0.002),
    "SaveImage": (0.05, 0.03),
    "PreviewImage": (0.02, 0.01),
    "ImageScale": (0.01, 0.02),
    "ImageBlur": (0.02, 0.04),
    "ImageInvert": (0.005, 0.005),
    "GetImageSize": (0.001, 0.0),
    "LoadImage": (0.02, 0.0),
    "VHS_VideoCombine": (0.15, 0.04),
}
