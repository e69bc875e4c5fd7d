"""What the time estimate reads from a workflow before it runs: cost inputs, cold or warm, keys, priors."""

from __future__ import annotations

from typing import Any

from tests.traces import load_workflow
from worker.comfyui.node_costs import NodeSpec, PriorDurations, node_specs, prior_cost


def _txt2img(width: int = 512, height: int = 512, batch: int = 1, steps: int = 20) -> dict[str, Any]:
    workflow = load_workflow("txt2img-sd15-random.json")
    workflow["5"]["inputs"].update(width=width, height=height, batch_size=batch)
    workflow["3"]["inputs"]["steps"] = steps
    return workflow


def test_resolution_and_frames_flow_downstream_from_the_latent() -> None:
    specs = node_specs(_txt2img(768, 512, batch=4))
    for node_id in ("3", "5", "8", "9"):  # sampler, latent, decode, save
        assert (specs[node_id].pixels, specs[node_id].frames) == (768 * 512, 4), node_id
    assert specs["4"].pixels == 0 and specs["6"].pixels == 0  # the loader and the text encoders see no image
    assert specs["3"].steps == 20 and specs["8"].steps == 0


def test_an_image_scale_sets_the_resolution_of_what_follows() -> None:
    workflow = _txt2img()
    workflow["10"] = {"class_type": "ImageScale", "inputs": {"image": ["8", 0], "width": 1024, "height": 1024}}
    workflow["9"]["inputs"]["images"] = ["10", 0]
    specs = node_specs(workflow)
    assert specs["10"].pixels == specs["9"].pixels == 1024 * 1024
    assert specs["8"].pixels == 512 * 512


def test_cold_is_the_first_user_of_a_loader_that_runs_and_a_warm_rerun_is_warm() -> None:
    cold = node_specs(_txt2img())
    assert cold["4"].cold and cold["3"].cold and cold["8"].cold
    assert sorted(n for n in ("6", "7") if cold[n].cold) == ["6"]  # one of the two encoders loads CLIP
    assert not cold["9"].cold and not cold["5"].cold
    warm = node_specs(_txt2img(), cached=["4", "5", "6", "7"])
    assert set(warm) == {"3", "8", "9"}
    assert not any(spec.cold for spec in warm.values())


def test_a_refiner_on_the_same_model_is_warm() -> None:
    workflow = _txt2img()
    workflow["10"] = {"class_type": "KSampler", "inputs": {**workflow["3"]["inputs"], "latent_image": ["3", 0], "steps": 8}}
    specs = node_specs(workflow)
    assert specs["3"].cold and not specs["10"].cold


def test_keys_name_the_cost_inputs_not_the_node_id_nor_the_steps() -> None:
    specs = node_specs(_txt2img(steps=20))
    other = node_specs(_txt2img(steps=30))
    assert specs["3"].key == other["3"].key == "KSampler px=262144 n=1 cold"
    assert specs["4"].key == "CheckpointLoaderSimple px=0 n=1 cold m=sd15-random-fp16.safetensors"
    assert node_specs(_txt2img(1024, 1024))["3"].key != specs["3"].key


def test_a_cycle_or_a_dangling_link_does_not_loop_or_raise() -> None:
    workflow = {
        "1": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["99", 0]}},
        "4": "not a node",
    }
    specs = node_specs(workflow)
    assert set(specs) == {"1", "2", "3"}
    assert specs["1"].pixels == 0 and specs["3"].frames == 1


def test_priors_have_the_shape_of_a_real_pod() -> None:
    def spec(class_type: str, *, steps: int = 0, cold: bool = False, pixels: int = 512 * 512) -> NodeSpec:
        return NodeSpec("n", class_type, pixels, 1, steps, cold)

    loader = prior_cost(spec("CheckpointLoaderSimple", cold=True))
    sampler_cold, sampler_warm = prior_cost(spec("KSampler", steps=20, cold=True)), prior_cost(spec("KSampler", steps=20))
    assert loader.total_s > sampler_warm.total_s > prior_cost(spec("VAEDecode")).total_s > prior_cost(spec("EmptyLatentImage")).total_s
    assert sampler_cold.fixed_s > sampler_warm.fixed_s and sampler_cold.per_step_s == sampler_warm.per_step_s
    assert prior_cost(spec("KSampler", steps=20, pixels=1024 * 1024)).per_step_s > 4 * sampler_warm.per_step_s
    assert prior_cost(spec("CLIPTextEncode", cold=True)).total_s > prior_cost(spec("CLIPTextEncode")).total_s
    assert not loader.learned and PriorDurations().expect(spec("Anything")) == prior_cost(spec("Anything"))
