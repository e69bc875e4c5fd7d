"""The node classes the simulator knows: their input specs (as ``/object_info`` shows them) and
the function each runs. The catalogue only; what running a node produces is ``node_runs``,
the shapes (``NodeClass``, ``InputSpec`` …) are ``node_types``, re-exported here.

Only what a client can observe is modelled: which inputs are validated and how, which nodes
are output nodes, how many progress steps a node reports, what UI output (files, text) it
returns and what it hands downstream (image sizes, so ``GetImageSize`` → ``ImageScale`` works).
"""

from __future__ import annotations

from typing import Any

from worker.simulator.node_runs import (
    checkpoint,
    clip_encode,
    empty_image,
    empty_latent,
    image_exists,
    image_scale,
    image_size,
    invert,
    ksampler,
    lab_raise,
    lab_slow,
    lab_text,
    load_image,
    passthrough_image,
    preview_image,
    save_image,
    vae_decode,
    video_combine,
)
from worker.simulator.node_types import InputSpec, NodeClass, NodeContext, NodeFailure, NodeOutcome, SimImage, SimLatent

__all__ = ["NODE_CLASSES", "InputSpec", "NodeClass", "NodeContext", "NodeFailure", "NodeOutcome", "SimImage", "SimLatent"]

MAX_RESOLUTION = 16384


def _int(spec_default: int, minimum: int = 1, maximum: int = MAX_RESOLUTION, step: int = 8, **extra: Any) -> dict[str, Any]:
    return {"default": spec_default, "min": minimum, "max": maximum, "step": step, **extra}


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
            checkpoint,
            category="loaders",
        ),
        NodeClass(
            "CLIPTextEncode",
            (
                InputSpec("text", "STRING", {"multiline": True, "dynamicPrompts": True, "tooltip": "The text to be encoded."}),
                InputSpec("clip", "CLIP", {"tooltip": "The CLIP model used for encoding the text."}),
            ),
            ("CONDITIONING",),
            clip_encode,
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
            empty_latent,
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
            ksampler,
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
            vae_decode,
            category="latent",
        ),
        NodeClass(
            "SaveImage",
            (
                InputSpec("images", "IMAGE", {"tooltip": "The images to save."}),
                InputSpec("filename_prefix", "STRING", {"default": "ComfyUI", "tooltip": "The prefix for the file to save."}),
            ),
            (),
            save_image,
            output_node=True,
            category="image",
        ),
        NodeClass("PreviewImage", (InputSpec("images", "IMAGE"),), (), preview_image, output_node=True, category="image"),
        NodeClass(
            "EmptyImage",
            (
                InputSpec("width", "INT", _int(512, 1, step=1)),
                InputSpec("height", "INT", _int(512, 1, step=1)),
                InputSpec("batch_size", "INT", {"default": 1, "min": 1, "max": 4096}),
                InputSpec("color", "INT", {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1, "display": "color"}),
            ),
            ("IMAGE",),
            empty_image,
            category="image",
        ),
        NodeClass("ImageInvert", (_IMAGE_IN,), ("IMAGE",), invert, category="image/postprocessing"),
        NodeClass(
            "ImageBlur",
            (
                _IMAGE_IN,
                InputSpec("blur_radius", "INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
                InputSpec("sigma", "FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}),
            ),
            ("IMAGE",),
            passthrough_image,
            category="image/postprocessing",
        ),
        NodeClass("GetImageSize", (_IMAGE_IN,), ("INT", "INT", "INT"), image_size, category="image"),
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
            image_scale,
            category="image/upscaling",
        ),
        NodeClass(
            "LoadImage",
            (InputSpec("image", "COMBO", {"image_upload": True}),),
            ("IMAGE", "MASK"),
            load_image,
            category="image",
            custom_checks={"image": image_exists},
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
            video_combine,
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
            lab_slow,
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
            lab_raise,
            optional=(InputSpec("value", "INT", {"forceInput": True}),),
            output_node=True,
            category="lab",
        ),
        NodeClass(
            "LabTextOutput",
            (InputSpec("text", "STRING", {"default": ""}),),
            (),
            lab_text,
            optional=(InputSpec("value", "INT", {"forceInput": True}),),
            output_node=True,
            category="lab",
        ),
    )
}
