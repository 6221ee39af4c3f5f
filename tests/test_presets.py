"""Presets: full-size models on the meta device (parameter counts, input shapes, a shape-only forward), tiny
configs through a real CPU forward, and workloads the models cannot take."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("diffusers")

from cfcompile.presets import PRESETS, Workload, get_preset  # noqa: E402

# Published sizes of the released transformers (billions of parameters).
PARAMS_B = {"flux": 11.9, "qwen-image": 20.4, "wan": 14.3, "sd3": 8.1}

# Full-size workload per preset and the hidden_states shape it gives (batch 2 checks the batch dimension).
FULL = {
    "flux": (Workload(batch=2), (2, 4096, 64)),                               # 1024 px / 16 = 64 -> 64 x 64
    "qwen-image": (Workload(batch=2), (2, 4096, 64)),
    "wan": (Workload(height=480, width=832, frames=81), (1, 16, 21, 60, 104)),  # 1 + 80 / 4 latent frames
    "sd3": (Workload(batch=2), (2, 16, 128, 128)),
}
TOKENS = {"flux": 4096, "qwen-image": 4096, "wan": 21 * 30 * 52, "sd3": 4096}


def _rss() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def test_presets_cover_the_four_families():
    assert {"flux", "qwen-image", "wan", "sd3"} <= set(PRESETS)
    for name, p in PRESETS.items():
        assert p.name == name and p.description and p.default_text_tokens > 0
        with pytest.raises(TypeError):
            p.config["num_layers"] = 1  # shared constants are read-only


@pytest.mark.parametrize("name", list(PARAMS_B))
def test_full_size_on_meta(name):
    p = get_preset(name)
    before = _rss()
    model = p.build("meta")
    grown = _rss() - before if before is not None else 0
    assert all(t.is_meta for t in (*model.parameters(), *model.buffers()))
    assert all(t.dtype == torch.bfloat16 for t in model.parameters())
    assert not model.training and not any(t.requires_grad for t in model.parameters())
    n = sum(t.numel() for t in model.parameters())
    assert n == pytest.approx(PARAMS_B[name] * 1e9, rel=0.02), f"{name}: {n / 1e9:.3f}B parameters"
    assert grown < 2**30, f"building {name} on meta grew the process by {grown / 2**30:.1f} GiB"

    workload, shape = FULL[name]
    assert p.tokens(workload) == TOKENS[name]
    inputs = p.inputs(model.config, workload, "meta", torch.bfloat16)
    assert tuple(inputs["hidden_states"].shape) == shape
    assert inputs["return_dict"] is False
    T = p.default_text_tokens
    assert inputs["encoder_hidden_states"].shape[:2] == (shape[0], T)
    if name == "flux":
        assert inputs["img_ids"].shape == (4096, 3) and inputs["txt_ids"].shape == (T, 3)
        assert inputs["guidance"].shape == (2,)
    if name == "qwen-image":
        assert inputs["img_shapes"] == [[(1, 64, 64)]] * 2
    if name == "sd3":
        assert T == 77 + 256 and inputs["pooled_projections"].shape == (2, 2048)
    with torch.no_grad():
        out = model(**inputs)[0]
    assert out.is_meta and out.shape == shape


@pytest.mark.parametrize("name", list(PRESETS))
def test_tiny_cpu_forward(name):
    p = get_preset(name)
    model = p.build("cpu", torch.float32, tiny=True)
    assert sum(t.numel() for t in model.parameters()) < 10**6
    workload = Workload(height=128, width=128, frames=5 if name == "wan" else 1, batch=2, text_tokens=16)
    inputs = p.inputs(model.config, workload, "cpu", torch.float32)
    again = p.inputs(model.config, workload, "cpu", torch.float32)
    for k, v in inputs.items():
        if torch.is_tensor(v):
            assert torch.equal(v, again[k]), f"{k} is not deterministic"
    with torch.no_grad():
        out = model(**inputs)[0]
    assert out.shape == inputs["hidden_states"].shape
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(height=0), "Workload.height: expected a positive int"),
    (dict(width=1024.0), "Workload.width: expected a positive int"),
    (dict(batch=True), "Workload.batch"),
    (dict(text_tokens=-1), "Workload.text_tokens: expected a positive int or None"),
    (dict(sp_degree=0), "Workload.sp_degree"),
])
def test_bad_workload_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Workload(**kwargs)


@pytest.mark.parametrize("name, workload, match", [
    ("flux", Workload(height=1000), "height=1000 is not a multiple of 16"),
    ("qwen-image", Workload(width=1032), "width=1032 is not a multiple of 16"),
    ("sd3", Workload(height=520), "height=520 is not a multiple of 16"),
    ("sd3", Workload(height=4096), "more than pos_embed_max_size=192"),
    ("sd3", Workload(sp_degree=2), "no context-parallel plan"),
    ("wan", Workload(frames=80), r"frames must be 4k \+ 1.*use 77 or 81"),
    ("wan", Workload(height=488, width=832, frames=81), "height=488 is not a multiple of 16"),
    ("flux", Workload(frames=5), "flux is an image model: frames must be 1"),
    ("flux", Workload(height=1040, width=1040, sp_degree=2), "4225 image tokens do not split evenly over sp_degree=2"),
    ("flux", Workload(text_tokens=100, sp_degree=8), "100 text tokens do not split evenly"),
    ("flux", Workload(sp_degree=16), "splits the 24 attention heads over the ranks; pick a degree that divides 24"),
])
def test_bad_workloads_name_the_problem(name, workload, match):
    p = get_preset(name)
    with pytest.raises(ValueError, match=match):
        p.tokens(workload)
    with pytest.raises(ValueError, match=match):
        p.inputs(None, workload, "meta")


def test_ulysses_degree_must_divide_the_heads_of_the_config_used():
    p = get_preset("flux")
    w = Workload(height=64, width=64, text_tokens=8, sp_degree=4)
    with pytest.raises(ValueError, match="splits the 2 attention heads"):
        p.inputs(p.tiny_config, w, "meta")
    model = p.build("meta", tiny=True, num_attention_heads=4)   # a tiny model that Ulysses 4 can split
    assert model.config.num_attention_heads == 4
    assert p.inputs(model.config, w, "meta")["hidden_states"].shape[1] == 16   # 64 px: 4 x 4 packed tokens


def test_sequence_parallel_splits():
    assert get_preset("wan").tokens(Workload(height=480, width=832, frames=81, sp_degree=8)) == 32760
    # Wan's context-parallel plan leaves the text whole: an odd text length is fine.
    get_preset("wan").check(Workload(frames=81, text_tokens=511, sp_degree=2))


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown preset 'flux2'; known: flux, qwen-image, wan, sd3"):
        get_preset("flux2")
