"""Held-out DiTs (benchmarks/heldout.py, issue 17): the real configs on the meta device (the parameter counts of the
released checkpoints prove they are the real ones), the tiny configs through offload + chunkflow against eager, a
cost-model prediction for each, and bench_offload taking them."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")

BENCH = Path(__file__).parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import cfcompile  # noqa: E402
from cfcompile.presets import PRESETS, Workload  # noqa: E402
from heldout import HELDOUT, get_model  # noqa: E402

# Parameters of the released transformers (billions): HunyuanVideo 12.82B, CogVideoX-5B 5.57B, Sana 1600M 1.60B.
PARAMS_B = {"hunyuan-video": 12.82, "cogvideox-5b": 5.57, "sana-1600m": 1.60}

# Full-size workload (bench_offload's default) and the hidden_states shape the pipeline passes.
FULL = {
    "hunyuan-video": (Workload(height=544, width=960, frames=61), (1, 16, 16, 68, 120), 16 * 34 * 60),
    "cogvideox-5b": (Workload(height=480, width=720, frames=49, batch=2), (2, 13, 16, 60, 90), 13 * 30 * 45),
    "sana-1600m": (Workload(height=1024, width=1024, batch=2), (2, 32, 32, 32), 32 * 32),
}
VIDEO = {"hunyuan-video", "cogvideox-5b"}
OPTIONS = {"chunk_size": "8KiB", "resident_fraction": 0.5}


def _tiny(name: str, batch: int = 1) -> Workload:
    return Workload(height=128, width=128, frames=5 if name in VIDEO else 1, batch=batch, text_tokens=16)


def test_held_out_models_are_not_presets():
    assert set(HELDOUT) == set(PARAMS_B) and not set(HELDOUT) & set(PRESETS)
    assert len(VIDEO & set(HELDOUT)) >= 2
    assert get_model("hunyuan-video") is HELDOUT["hunyuan-video"] and get_model("flux") is PRESETS["flux"]
    with pytest.raises(ValueError, match="held out: hunyuan-video"):
        get_model("mochi")


@pytest.mark.parametrize("name", list(PARAMS_B))
def test_real_config_on_meta(name):
    p = HELDOUT[name]
    model = p.build("meta")
    n = sum(t.numel() for t in model.parameters())
    assert n == pytest.approx(PARAMS_B[name] * 1e9, rel=0.005), f"{name}: {n / 1e9:.3f}B parameters"
    workload, shape, tokens = FULL[name]
    assert p.tokens(workload) == tokens
    inputs = p.inputs(model.config, workload, "meta", torch.bfloat16)
    assert tuple(inputs["hidden_states"].shape) == shape and inputs["return_dict"] is False
    assert inputs["encoder_hidden_states"].shape[:2] == (shape[0], p.default_text_tokens)
    if name == "hunyuan-video":
        assert model.config.num_layers == 20 and model.config.num_single_layers == 40
        assert inputs["pooled_projections"].shape == (1, 768) and inputs["guidance"].shape == (1,)
        assert inputs["encoder_attention_mask"].shape == (1, 256)
    if name == "cogvideox-5b":
        assert model.config.num_layers == 42 and model.config.num_attention_heads == 48
        cos, sin = inputs["image_rotary_emb"]
        assert cos.shape == sin.shape == (tokens, 64)  # one rope row per video token, head dim 64
        assert inputs["timestep"].dtype == torch.int64
    if name == "sana-1600m":
        assert inputs["encoder_attention_mask"].shape == (2, 300)


@pytest.mark.parametrize("name, workload, match", [
    ("hunyuan-video", Workload(height=544, width=960, frames=60), "frames must be 4k \\+ 1"),
    ("cogvideox-5b", Workload(height=484, width=720, frames=49), "height=484 is not a multiple of 16"),
    ("sana-1600m", Workload(height=1000, width=1024), "height=1000 is not a multiple of 32"),
    ("sana-1600m", Workload(frames=5), "image model"),
])
def test_bad_workloads_name_the_problem(name, workload, match):
    with pytest.raises(ValueError, match=match):
        HELDOUT[name].tokens(workload)


def _tiny_model_and_inputs(name):
    p = HELDOUT[name]
    model = p.build("cpu", torch.float32, tiny=True)
    assert sum(t.numel() for t in model.parameters()) < 10**6
    return model, p.inputs(model.config, _tiny(name, batch=2), "cpu", torch.float32)


@pytest.mark.parametrize("name", list(PARAMS_B))
def test_tiny_inputs_run_eagerly(name):
    model, inputs = _tiny_model_and_inputs(name)
    with torch.no_grad():
        eager = model(**inputs)[0]
    assert eager.shape == inputs["hidden_states"].shape and torch.isfinite(eager).all()


# One of the three through the backend: a cold Inductor compile of each tiny model takes 16-43 s on the CI machine,
# and the chunkflow path is the one every model takes (tests/test_models.py covers the presets)
@pytest.mark.parametrize("name", ["cogvideox-5b"])
def test_tiny_through_chunkflow_matches_eager(name):
    model, inputs = _tiny_model_and_inputs(name)
    with torch.no_grad():
        eager = model(**inputs)[0]
    cfcompile.offload(model, "cpu")
    try:
        fn = torch.compile(model, backend="chunkflow", options=OPTIONS)
        with torch.no_grad():
            first, second = fn(**inputs)[0], fn(**inputs)[0]
    finally:
        cfcompile.restore(model)
    torch.testing.assert_close(first, eager, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(second, eager, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(PARAMS_B))
def test_cost_model_predicts(name):
    p = HELDOUT[name]
    model = p.build("meta", tiny=True)
    workload = _tiny(name)
    inputs = p.inputs(model.config, workload, "meta", torch.bfloat16)
    report = cfcompile.plan_model(model, workload, inputs=inputs, profile="H100", **OPTIONS)
    assert report.graphs == 1, f"{name}: the forward broke into {report.graphs} graphs"
    step = report.prediction.step_ms
    assert math.isfinite(step) and step > 0
    assert report.prediction.peak_bytes > 0


def test_bench_offload_takes_the_held_out_models():
    out = subprocess.run([sys.executable, str(BENCH / "bench_offload.py"), "--help"], capture_output=True, text=True,
                         check=True).stdout
    for name in HELDOUT:
        assert name in out
    bad = subprocess.run([sys.executable, str(BENCH / "bench_offload.py"), "--model", "hunyuan-video", "--frames",
                          "60", "--device", "cpu", "--tiny"], capture_output=True, text=True)
    assert bad.returncode != 0 and "frames must be 4k + 1" in bad.stderr
