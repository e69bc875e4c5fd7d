"""The simulator's realistic timing profile: models load once, /free or a reload makes them cold again."""

from __future__ import annotations

from worker.simulator.nodes import SimLatent
from worker.simulator.timing_profile import RealisticTiming

SAMPLER_INPUTS = {"model": "model:a.safetensors", "latent_image": SimLatent(512, 512, 1)}


def test_a_model_pays_its_load_once_until_it_is_unloaded_or_reloaded() -> None:
    profile = RealisticTiming(jitter=0.0)
    cold, step = profile.durations("KSampler", SAMPLER_INPUTS)
    warm, same_step = profile.durations("KSampler", SAMPLER_INPUTS)
    assert cold > 1.0 > warm and step == same_step and step is not None
    profile.unload()
    assert profile.durations("KSampler", SAMPLER_INPUTS)[0] == cold
    profile.durations("CheckpointLoaderSimple", {"ckpt_name": "a.safetensors"})  # new weights
    assert profile.durations("KSampler", SAMPLER_INPUTS)[0] == cold


def test_step_time_grows_with_resolution_and_batch_and_scale_applies() -> None:
    profile = RealisticTiming(jitter=0.0, scale=0.5)
    small = profile.durations("KSampler", SAMPLER_INPUTS)[1]
    big = profile.durations("KSampler", {**SAMPLER_INPUTS, "latent_image": SimLatent(1024, 1024, 2)})[1]
    assert small is not None and big is not None and big > 8 * small
    assert profile.durations("CheckpointLoaderSimple", {"ckpt_name": "a"})[0] == 1.25
