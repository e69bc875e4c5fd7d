"""What running each simulated node produces: the outputs it hands downstream, its UI output
(files, text) and its failures.

Apart from the catalogue (``nodes``), which only says which function a class runs: these are
the behaviours a client can observe (image sizes flow from ``EmptyImage`` through
``ImageScale``; ``LabRaiseError`` fails on purpose).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.simulator.node_types import NodeContext, NodeFailure, NodeOutcome, SimImage, SimLatent


def _image(value: Any) -> SimImage:
    return value if isinstance(value, SimImage) else SimImage(64, 64, 1, (0, 0, 0))


def empty_image(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    color = int(inputs.get("color", 0))
    rgb = ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF)
    return NodeOutcome((SimImage(int(inputs["width"]), int(inputs["height"]), int(inputs["batch_size"]), rgb),))


def invert(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    img = _image(inputs["image"])
    r, g, b = img.rgb
    return NodeOutcome((SimImage(img.width, img.height, img.batch, (255 - r, 255 - g, 255 - b)),))


def passthrough_image(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    return NodeOutcome((_image(inputs["image"]),))


def image_size(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    img = _image(inputs["image"])
    return NodeOutcome(
        (img.width, img.height, img.batch),
        text=f"width: {img.width}, height: {img.height}\n batch size: {img.batch}",
    )


def image_scale(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    img = _image(inputs["image"])
    width, height = int(inputs["width"]), int(inputs["height"])
    if width == 0 and height == 0:
        return NodeOutcome((img,))
    width = width or max(1, img.width * height // max(1, img.height))
    height = height or max(1, img.height * width // max(1, img.width))
    return NodeOutcome((SimImage(width, height, img.batch, img.rgb),))


def save_image(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    files = ctx.save_image(_image(inputs["images"]), str(inputs.get("filename_prefix", "ComfyUI")), "output")
    return NodeOutcome((), {"images": files})


def preview_image(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    return NodeOutcome((), {"images": ctx.save_image(_image(inputs["images"]), "", "temp")})


def load_image(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    return NodeOutcome((ctx.load_image(str(inputs["image"])) or SimImage(64, 64, 1, (128, 128, 128)), None))


def checkpoint(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    name = str(inputs["ckpt_name"])
    return NodeOutcome((f"model:{name}", f"clip:{name}", f"vae:{name}"))


def clip_encode(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    return NodeOutcome((f"cond:{inputs['text']}",))


def empty_latent(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    return NodeOutcome((SimLatent(int(inputs["width"]), int(inputs["height"]), int(inputs["batch_size"])),))


def ksampler(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    latent = inputs["latent_image"]
    return NodeOutcome((latent if isinstance(latent, SimLatent) else SimLatent(64, 64, 1),))


def vae_decode(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    latent = inputs["samples"]
    lat = latent if isinstance(latent, SimLatent) else SimLatent(64, 64, 1)
    seedish = hash(str(inputs.get("samples"))) & 0xFFFFFF
    return NodeOutcome((SimImage(lat.width, lat.height, lat.batch, ((seedish >> 16) & 0xFF, (seedish >> 8) & 0xFF, seedish & 0xFF)),))


def video_combine(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    file = ctx.save_video(_image(inputs["images"]), str(inputs.get("filename_prefix", "AnimateDiff")), float(inputs.get("frame_rate", 8)))
    return NodeOutcome(("<VHS_FILENAMES>",), {"gifs": [file]})


def lab_slow(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    steps = int(inputs["steps"])
    return NodeOutcome((steps,), {"text": [f"slept {steps} x {inputs['seconds_per_step']}s (salt {inputs.get('salt', 0)})"]})


def lab_raise(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    raise NodeFailure("RuntimeError", f"{inputs['message']} (value={inputs.get('value')})")


def lab_text(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    text = str(inputs["text"])
    if inputs.get("value") is not None:
        text = f"{text} [value={inputs['value']}]"
    return NodeOutcome((), {"text": [text]})


def image_exists(value: Any, input_files: frozenset[str]) -> str | None:
    name = str(value)
    return None if name in input_files else f"Invalid image file: {name}"
