"""The node classes the simulator knows: their input specs (as ``/object_info`` shows them) and
what running them produces.

Only what a client can observe is modelled: which inputs are validated and how, which nodes
are output nodes, how many progress steps a node reports, what UI output (files, text) it
returns and what it hands downstream (image sizes, so ``GetImageSize`` → ``ImageScale`` works).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NODE_CLASSES", "InputSpec", "NodeClass", "NodeFailure", "NodeOutcome", "SimImage", "SimLatent"]

MAX_RESOLUTION = 16384


@dataclass(frozen=True)
class SimImage:
    width: int
    height: int
    batch: int
    rgb: tuple[int, int, int]


@dataclass(frozen=True)
class SimLatent:
    width: int
    height: int
    batch: int


class NodeFailure(Exception):
    """A node raised while running; becomes ``execution_error``."""

    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type


@dataclass(frozen=True)
class InputSpec:
    name: str
    kind: str | tuple[str, ...]  # a type name, or the allowed values of a combo
    options: Mapping[str, Any] = field(default_factory=dict)

    def config(self) -> list[Any]:
        """The ``[type, options]`` pair of ``/object_info`` (``input_config`` in errors)."""
        kind: Any = list(self.kind) if isinstance(self.kind, tuple) else self.kind
        return [kind, dict(self.options)] if self.options else [kind]


@dataclass(frozen=True)
class NodeOutcome:
    outputs: tuple[Any, ...] = ()
    ui: dict[str, Any] | None = None
    text: str | None = None  # a binary TEXT frame (broadcast, like GetImageSize)


class NodeContext:
    """What a running node may do besides computing: save files."""

    def save_image(self, image: SimImage, prefix: str, kind: str) -> list[dict[str, Any]]:  # pragma: no cover
        raise NotImplementedError

    def save_video(self, image: SimImage, prefix: str, frame_rate: float) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def load_image(self, name: str) -> SimImage | None:  # pragma: no cover
        """The uploaded image ``LoadImage`` names (its size and colour), or None."""
        raise NotImplementedError


Runner = Callable[[Mapping[str, Any], NodeContext], NodeOutcome]


@dataclass(frozen=True)
class NodeClass:
    class_type: str
    required: tuple[InputSpec, ...]
    return_types: tuple[str, ...]
    run: Runner
    optional: tuple[InputSpec, ...] = ()
    output_node: bool = False
    category: str = "simulator"
    #: name of the INT input giving the number of progress steps, if the node reports progress
    progress_input: str | None = None
    #: sampler-like nodes send a latent preview per step
    previews: bool = False
    #: per-step duration taken from an input (seconds), else the simulator's configured step time
    step_seconds_input: str | None = None
    #: custom validation (like ``VALIDATE_INPUTS``): input name -> check returning an error text
    custom_checks: Mapping[str, Callable[[Any, frozenset[str]], str | None]] = field(default_factory=dict)

    def spec(self, name: str) -> InputSpec | None:
        for item in self.required + self.optional:
            if item.name == name:
                return item
        return None

    def object_info(self) -> dict[str, Any]:
        return {
            "input": {
                "required": {s.name: s.config() for s in self.required},
                **({"optional": {s.name: s.config() for s in self.optional}} if self.optional else {}),
            },
            "input_order": {
                "required": [s.name for s in self.required],
                **({"optional": [s.name for s in self.optional]} if self.optional else {}),
            },
            "output": list(self.return_types),
            "output_is_list": [False] * len(self.return_types),
            "output_name": list(self.return_types),
            "name": self.class_type,
            "display_name": self.class_type,
            "description": "",
            "python_module": "nodes",
            "category": self.category,
            "output_node": self.output_node,
        }


def _image(value: Any) -> SimImage:
    return value if isinstance(value, SimImage) else SimImage(64, 64, 1, (0, 0, 0))


def _int(spec_default: int, minimum: int = 1, maximum: int = MAX_RESOLUTION, step: int = 8, **extra: Any) -> dict[str, Any]:
    return {"default": spec_default, "min": minimum, "max": maximum, "step": step, **extra}


def _empty_image(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    color = int(inputs.get("color", 0))
    rgb = ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF)
    return NodeOutcome((SimImage(int(inputs["width"]), int(inputs["height"]), int(inputs["batch_size"]), rgb),))


def _invert(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    img = _image(inputs["image"])
    r, g, b = img.rgb
    return NodeOutcome((SimImage(img.width, img.height, img.batch, (255 - r, 255 - g, 255 - b)),))


def _passthrough_image(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    return NodeOutcome((_image(inputs["image"]),))


def _image_size(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    img = _image(inputs["image"])
    return NodeOutcome(
        (img.width, img.height, img.batch),
        text=f"width: {img.width}, height: {img.height}\n batch size: {img.batch}",
    )


def _image_scale(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    img = _image(inputs["image"])
    width, height = int(inputs["width"]), int(inputs["height"])
    if width == 0 and height == 0:
        return NodeOutcome((img,))
    width = width or max(1, img.width * height // max(1, img.height))
    height = height or max(1, img.height * width // max(1, img.width))
    return NodeOutcome((SimImage(width, height, img.batch, img.rgb),))


def _save_image(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    files = ctx.save_image(_image(inputs["images"]), str(inputs.get("filename_prefix", "ComfyUI")), "output")
    return NodeOutcome((), {"images": files})


def _preview_image(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    return NodeOutcome((), {"images": ctx.save_image(_image(inputs["images"]), "", "temp")})


def _load_image(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    return NodeOutcome((ctx.load_image(str(inputs["image"])) or SimImage(64, 64, 1, (128, 128, 128)), None))


def _checkpoint(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    name = str(inputs["ckpt_name"])
    return NodeOutcome((f"model:{name}", f"clip:{name}", f"vae:{name}"))


def _clip_encode(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    return NodeOutcome((f"cond:{inputs['text']}",))


def _empty_latent(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    return NodeOutcome((SimLatent(int(inputs["width"]), int(inputs["height"]), int(inputs["batch_size"])),))


def _ksampler(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    latent = inputs["latent_image"]
    return NodeOutcome((latent if isinstance(latent, SimLatent) else SimLatent(64, 64, 1),))


def _vae_decode(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    latent = inputs["samples"]
    lat = latent if isinstance(latent, SimLatent) else SimLatent(64, 64, 1)
    seedish = hash(str(inputs.get("samples"))) & 0xFFFFFF
    return NodeOutcome((SimImage(lat.width, lat.height, lat.batch, ((seedish >> 16) & 0xFF, (seedish >> 8) & 0xFF, seedish & 0xFF)),))


def _video_combine(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    file = ctx.save_video(_image(inputs["images"]), str(inputs.get("filename_prefix", "AnimateDiff")), float(inputs.get("frame_rate", 8)))
    return NodeOutcome(("<VHS_FILENAMES>",), {"gifs": [file]})


def _lab_slow(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    steps = int(inputs["steps"])
    return NodeOutcome((steps,), {"text": [f"slept {steps} x {inputs['seconds_per_step']}s (salt {inputs.get('salt', 0)})"]})


def _lab_raise(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    raise NodeFailure("RuntimeError", f"{inputs['message']} (value={inputs.get('value')})")


def _lab_text(inputs: Mapping[str, Any], ctx: NodeContext) -> NodeOutcome:
    text = str(inputs["text"])
    if inputs.get("value") is not None:
        text = f"{text} [value={inputs['value']}]"
    return NodeOutcome((), {"text": [text]})


def _image_exists(value: Any, input_files: frozenset[str]) -> str | None:
    name = str(value)
    return None if name in input_files else f"Invalid image file: {name}"


_SAMPLERS = ("euler", "euler_ancestral", "heun", "dpm_2", "dpmpp_2m", "dpmpp_sde", "ddim", "uni_pc")
_SCHEDULERS = ("normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta")
_UPSCALE = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
_CHECKPOINTS = ("sd15-random-fp16.safetensors", "v1-5-pruned-emaonly.safetensors", "sdxl-simulated.safetensors")
_IMAGE_IN = InputSpec("image", "IMAGE")

NODE_CLASSES: dict[str, NodeClass] = {
    n.class_type: n
    for n in (
        NodeClass(
            "CheckpointLoaderSimple",
            (InputSpec("ckpt_name", _CHECKPOINTS, {"tooltip": "The name of the checkpoint (model) to load."}),),
            ("MODEL", "CLIP", "VAE"),
            _checkpoint,
            category="loaders",
        ),
        NodeClass(
            "CLIPTextEncode",
            (
                InputSpec("text", "STRING", {"multiline": True, "dynamicPrompts": True, "tooltip": "The text to be encoded."}),
                InputSpec("clip", "CLIP", {"tooltip": "The CLIP model used for encoding the text."}),
            ),
            ("CONDITIONING",),
            _clip_encode,
            category="conditioning",
        ),
        NodeClass(
            "EmptyLatentImage",
            (
                InputSpec("width", "INT", _int(512, 16, tooltip="The width of the latent images in pixels.")),
                InputSpec("height", "INT", _int(512, 16, tooltip="The height of the latent images in pixels.")),
                InputSpec(
                    "batch_size", "INT", {"default": 1, "min": 1, "max": 4096, "tooltip": "The number of latent images in the batch."}
                ),
            ),
            ("LATENT",),
            _empty_latent,
            category="latent",
        ),
        NodeClass(
            "KSampler",
            (
                InputSpec("model", "MODEL", {"tooltip": "The model used for denoising the input latent."}),
                InputSpec(
                    "seed",
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 0xFFFFFFFFFFFFFFFF,
                        "control_after_generate": True,
                        "tooltip": "The random seed used for creating the noise.",
                    },
                ),
                InputSpec(
                    "steps", "INT", {"default": 20, "min": 1, "max": 10000, "tooltip": "The number of steps used in the denoising process."}
                ),
                InputSpec(
                    "cfg",
                    "FLOAT",
                    {
                        "default": 8.0,
                        "min": 0.0,
                        "max": 100.0,
                        "step": 0.1,
                        "round": 0.01,
                        "tooltip": "The Classifier-Free Guidance scale.",
                    },
                ),
                InputSpec("sampler_name", _SAMPLERS, {"tooltip": "The algorithm used when sampling."}),
                InputSpec("scheduler", _SCHEDULERS, {"tooltip": "The scheduler controls how noise is gradually removed."}),
                InputSpec("positive", "CONDITIONING", {"tooltip": "The conditioning describing the attributes to include."}),
                InputSpec("negative", "CONDITIONING", {"tooltip": "The conditioning describing the attributes to exclude."}),
                InputSpec("latent_image", "LATENT", {"tooltip": "The latent image to denoise."}),
                InputSpec(
                    "denoise",
                    "FLOAT",
                    {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "The amount of denoising applied."},
                ),
            ),
            ("LATENT",),
            _ksampler,
            category="sampling",
            progress_input="steps",
            previews=True,
        ),
        NodeClass(
            "VAEDecode",
            (
                InputSpec("samples", "LATENT", {"tooltip": "The latent to be decoded."}),
                InputSpec("vae", "VAE", {"tooltip": "The VAE model used for decoding the latent."}),
            ),
            ("IMAGE",),
            _vae_decode,
            category="latent",
        ),
        NodeClass(
            "SaveImage",
            (
                InputSpec("images", "IMAGE", {"tooltip": "The images to save."}),
                InputSpec("filename_prefix", "STRING", {"default": "ComfyUI", "tooltip": "The prefix for the file to save."}),
            ),
            (),
            _save_image,
            output_node=True,
            category="image",
        ),
        NodeClass("PreviewImage", (InputSpec("images", "IMAGE"),), (), _preview_image, output_node=True, category="image"),
        NodeClass(
            "EmptyImage",
            (
                InputSpec("width", "INT", _int(512, 1, step=1)),
                InputSpec("height", "INT", _int(512, 1, step=1)),
                InputSpec("batch_size", "INT", {"default": 1, "min": 1, "max": 4096}),
                InputSpec("color", "INT", {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1, "display": "color"}),
            ),
            ("IMAGE",),
            _empty_image,
            category="image",
        ),
        NodeClass("ImageInvert", (_IMAGE_IN,), ("IMAGE",), _invert, category="image/postprocessing"),
        NodeClass(
            "ImageBlur",
            (
                _IMAGE_IN,
                InputSpec("blur_radius", "INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
                InputSpec("sigma", "FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}),
            ),
            ("IMAGE",),
            _passthrough_image,
            category="image/postprocessing",
        ),
        NodeClass("GetImageSize", (_IMAGE_IN,), ("INT", "INT", "INT"), _image_size, category="image"),
        NodeClass(
            "ImageScale",
            (
                _IMAGE_IN,
                InputSpec("upscale_method", _UPSCALE),
                InputSpec("width", "INT", _int(512, 0, step=1)),
                InputSpec("height", "INT", _int(512, 0, step=1)),
                InputSpec("crop", ("disabled", "center")),
            ),
            ("IMAGE",),
            _image_scale,
            category="image/upscaling",
        ),
        NodeClass(
            "LoadImage",
            (InputSpec("image", "COMBO", {"image_upload": True}),),
            ("IMAGE", "MASK"),
            _load_image,
            category="image",
            custom_checks={"image": _image_exists},
        ),
        NodeClass(
            "VHS_VideoCombine",
            (
                InputSpec("images", "IMAGE"),
                InputSpec("frame_rate", "FLOAT", {"default": 8, "min": 1, "step": 1}),
                InputSpec("loop_count", "INT", {"default": 0, "min": 0, "max": 100, "step": 1}),
                InputSpec("filename_prefix", "STRING", {"default": "AnimateDiff"}),
                InputSpec("format", ("image/gif", "image/webp", "video/h264-mp4")),
                InputSpec("pingpong", "BOOLEAN", {"default": False}),
                InputSpec("save_output", "BOOLEAN", {"default": True}),
            ),
            ("VHS_FILENAMES",),
            _video_combine,
            output_node=True,
            category="Video Helper Suite",
        ),
        NodeClass(
            "LabSlowProgress",
            (
                InputSpec("steps", "INT", {"default": 8, "min": 1, "max": 10000}),
                InputSpec("seconds_per_step", "FLOAT", {"default": 0.25, "min": 0.0, "max": 60.0}),
                InputSpec("salt", "INT", {"default": 0, "min": 0, "max": 0xFFFFFFFF}),
            ),
            ("INT",),
            _lab_slow,
            optional=(InputSpec("emit_text", "BOOLEAN", {"default": False}),),
            output_node=True,
            category="lab",
            progress_input="steps",
            step_seconds_input="seconds_per_step",
        ),
        NodeClass(
            "LabRaiseError",
            (InputSpec("message", "STRING", {"default": "lab: deliberate failure"}),),
            (),
            _lab_raise,
            optional=(InputSpec("value", "INT", {"forceInput": True}),),
            output_node=True,
            category="lab",
        ),
        NodeClass(
            "LabTextOutput",
            (InputSpec("text", "STRING", {"default": ""}),),
            (),
            _lab_text,
            optional=(InputSpec("value", "INT", {"forceInput": True}),),
            output_node=True,
            category="lab",
        ),
    )
}
