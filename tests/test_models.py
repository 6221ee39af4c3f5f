"""End-to-end: small diffusers transformers through the chunkflow backend on the CPU.

For each model: eager reference, plain Inductor, then ``cfcompile.offload(model, "cpu")`` and
``torch.compile(backend="chunkflow")`` with small chunks, so every block is split into several chunks, half the
chunks stay resident and the rest stream through the arena on every call. The generated wrapper code is checked
for the prefetch -> wait -> read order and for reads after an overwriting prefetch.
"""

from __future__ import annotations

import re

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

import cfcompile  # noqa: E402
from cfcompile.compiler.backend import compiled_graphs  # noqa: E402
from cfcompile.compiler.rewrite import clobbers  # noqa: E402
from cfcompile.compiler.verify import check_generated_order  # noqa: E402
from torch._inductor.utils import run_and_get_code  # noqa: E402

CHUNKFLOW_OPTIONS = {"chunk_size": 8192, "resident_fraction": 0.5}


# ---------------------------------------------------------------------------------------------------------------
# Small configurations (fp32, >= 2 transformer blocks each) and matching inputs. Built after torch.manual_seed(0).
# ---------------------------------------------------------------------------------------------------------------

def _flux():
    from diffusers import FluxTransformer2DModel

    # 1 double-stream + 2 single-stream blocks (3 block groups); inner dim 2 * 16 = 32; rope axes sum to head dim.
    model = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=(4, 6, 6))
    B, L, T = 1, 64, 16
    inputs = dict(
        hidden_states=torch.randn(B, L, 16), encoder_hidden_states=torch.randn(B, T, 32),
        pooled_projections=torch.randn(B, 32), timestep=torch.tensor([0.5]), img_ids=torch.randn(L, 3),
        txt_ids=torch.zeros(T, 3), guidance=torch.tensor([3.5]), return_dict=False)
    return model, inputs


def _sd3():
    from diffusers import SD3Transformer2DModel

    # Inner dim 2 * 16 = 32; caption_projection_dim must equal the inner dim (the context stream runs at it).
    # pos_embed_max_size >= height / patch_size: the positional embedding is cropped from a max-size grid.
    model = SD3Transformer2DModel(
        sample_size=8, patch_size=1, in_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, caption_projection_dim=32, pooled_projection_dim=32, out_channels=4,
        pos_embed_max_size=8)
    B, H, W, T = 1, 8, 8, 16
    inputs = dict(
        hidden_states=torch.randn(B, 4, H, W), encoder_hidden_states=torch.randn(B, T, 32),
        pooled_projections=torch.randn(B, 32), timestep=torch.tensor([500.0]), return_dict=False)
    return model, inputs


def _wan():
    from diffusers import WanTransformer3DModel

    # WanRotaryPosEmbed splits the head dim into t/h/w parts, h = w = 2 * (head_dim // 6), t = the rest, each of
    # which must be even: head_dim 12 -> (4, 4, 4). rope_max_seq_len must cover frames and patched height/width.
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
        text_dim=16, freq_dim=32, ffn_dim=64, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32)
    B, C, F, H, W, T = 1, 4, 2, 8, 8, 8
    inputs = dict(
        hidden_states=torch.randn(B, C, F, H, W), timestep=torch.tensor([500]),
        encoder_hidden_states=torch.randn(B, T, 16), return_dict=False)
    return model, inputs


def _qwen():
    from diffusers import QwenImageTransformer2DModel

    # Inner dim 2 * 16 = 32; axes_dims_rope sums to the head dim, each part even (complex rope on pairs).
    # hidden_states' sequence length must equal prod(img_shapes[0]) (the rope is built from img_shapes).
    model = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4))
    B, F, H, W, T = 1, 1, 4, 4, 8
    inputs = dict(
        hidden_states=torch.randn(B, F * H * W, 16), encoder_hidden_states=torch.randn(B, T, 16),
        encoder_hidden_states_mask=torch.ones(B, T), timestep=torch.tensor([0.5]),
        img_shapes=[(F, H, W)] * B, return_dict=False)
    return model, inputs


MODELS = {"flux": _flux, "sd3": _sd3, "wan": _wan, "qwenimage": _qwen}


@pytest.fixture(autouse=True)
def _fresh_dynamo_and_cache(tmp_path, monkeypatch):
    # A fresh Inductor cache per test: the chunkflow pass and code generation really run (no FX-graph-cache hit
    # from an earlier session), so the generated code checked below is this build's.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor_cache"))
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _call_body(code: str) -> list[str]:
    """The lines of the generated wrapper's ``call()`` (as `check_generated_order` reads them)."""
    start = code.index("def call(self, args):")
    indent = len(code[:start].rsplit("\n", 1)[-1])
    lines = code[start:].splitlines()
    end = next((i for i, l in enumerate(lines[1:], 1) if l.strip() and len(l) - len(l.lstrip()) <= indent),
               len(lines))
    return [l.strip() for l in lines[1:end]]


def _reads(lines: list[str], input_index: int) -> list[str]:
    """Lines of ``call()`` that use graph input ``input_index``, other than unpacking, ``del`` and asserts."""
    word = re.compile(rf"\barg{input_index}_1\b")
    return [l for l in lines if word.search(l) and "= args" not in l
            and not l.startswith(("del ", "assert_size_stride", "assert_alignment"))]


def _outputs(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", list(MODELS))
def test_model_through_chunkflow(name):
    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    model = model.eval()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # The transformer blocks: offload packs each into a host group of its own, named after it.
    blocks = [f"{n}.{i}" for n, m in model.named_children() if isinstance(m, torch.nn.ModuleList)
              for i in range(len(m))]
    assert len(blocks) >= 2, blocks

    with torch.no_grad():
        eager = _outputs(model(**inputs))   # (no plain-Inductor reference: a second whole compile per model)

    cfcompile.offload(model, "cpu")
    fn = torch.compile(model, backend="chunkflow", options=CHUNKFLOW_OPTIONS)
    before = compiled_graphs()  # strong references: graphs compiled earlier stay distinguishable
    with torch.no_grad():
        out, codes = run_and_get_code(fn, **inputs)
        out = _outputs(out)
        again = _outputs(fn(**inputs))

    torch.testing.assert_close(out, eager)
    assert len(again) == len(out)
    for a, b in zip(again, out):
        assert torch.equal(a, b), "a second call of the chunkflow-compiled model gave a different output"

    # One Dynamo graph (no graph break), compiled by chunkflow into one wrapper.
    new = [g for g in compiled_graphs() if not any(g is b for b in before)]
    assert len(new) == 1, f"expected one chunkflow graph, got {len(new)}"
    assert len(codes) == 1, f"expected one generated wrapper, got {len(codes)}"
    g = new[0]
    plan = g.plan
    layout = g.layout
    assert check_generated_order(codes[0], list(layout.slots), clobbers(plan)) == []
    # The order check is vacuous for a slot the code never touches: every slot has its prefetch(es) and its wait, ...
    lines = _call_body(codes[0])
    for j, idx in enumerate(layout.slots):
        wrapped = plan.streamed[j].wrap_before is not None  # + one prefetch for the next call, in the tail
        assert sum(l.startswith(f"torch.ops.cfcompile.prefetch_.default(arg{idx}_1,") for l in lines) == 1 + wrapped, j
        assert sum(l.startswith(f"torch.ops.cfcompile.wait_.default(arg{idx}_1,") for l in lines) == 1, j
    # ... host buffers are only read by prefetches, and no kernel reads an offloaded weight in place: every read
    # goes through the arena slot or the resident buffer.
    for idx in layout.hosts:
        assert all(l.startswith("torch.ops.cfcompile.prefetch_.default(") for l in _reads(lines, idx)), idx
    for w in plan.weights:
        assert _reads(lines, w.input_index) == [], f"weight input {w.input_index} read from host memory"

    assert len(plan.streamed) >= 2
    resident = [c for c in plan.chunks if c.resident]
    assert resident and len(resident) < len(plan.chunks)
    # Small chunks: every block is split into several chunks.
    by_key = {gp.key.rsplit(":", 1)[0]: gp for gp in plan.groups}
    assert set(blocks) <= set(by_key), (blocks, list(by_key))
    for b in blocks:
        assert len(by_key[b].chunks) >= 3, by_key[b]
    # The cost model places the resident chunks (the first block, which nothing can hide, first); some block
    # still streams.
    assert any(by_key[b].streamed_bytes > 0 for b in blocks)
    assert plan.streamed_bytes > 0 and plan.total_arena_bytes > 0 and plan.total_resident_bytes > 0
