"""Call-time binding (`cfcompile.runtime.binding`) on small diffusers transformers: the toy-model cases of
tests/test_binding.py through diffusers' own APIs.

1. Regional compilation (``compile_repeated_blocks``) of an offloaded tiny Flux: one chunkflow graph per block
   structure serves every block of that structure, each call reading its own block's weights.
2. An MoE transformer whose routing breaks the graph at every expert (HiDream-I1's ``MOEFeedForwardSwiGLU.moe_infer``
   calls ``.cpu().numpy()``), compiled whole.
3. LoRA through diffusers' API on an offloaded, compiled tiny Flux: load, adapter weights, fuse / unfuse (in-place
   changes of offloaded weights), a second adapter, switching, unload.
4. Refusals: diffusers' layerwise casting and group offloading, and casts of an offloaded model, are refused with
   nothing changed.

Each comparison: the chunkflow-compiled output equals the eager output of the model as it is at that moment, on
repeated calls (fp32 on the CPU), every compiled call runs a chunkflow graph (none fell back to eager), and the
backend compiled every graph Dynamo gave it (a backend exception of the kinds Dynamo tolerates, e.g. a
data-dependent op, only logs a warning and splits the graph: outputs stay right, so it is checked on its own).
"""

from __future__ import annotations

import gc
import logging

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

import cfcompile  # noqa: E402
from cfcompile.compiler.backend import compiled_graphs  # noqa: E402
from cfcompile.offload import lookup  # noqa: E402
from cfcompile.presets import Workload, get_preset  # noqa: E402
from cfcompile.runtime.binding import Binder  # noqa: E402

OPTS = {"chunk_size": 8192, "resident_fraction": 0.5}
TOL = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(autouse=True)
def _fresh(tmp_path, monkeypatch):
    # graphs of earlier tests live in reference cycles until collected; a fresh Inductor cache so the chunkflow
    # pass really runs (no FX-graph-cache hit from another session)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor_cache"))
    gc.collect()
    yield


class Chunkflow(logging.Handler):
    """What the chunkflow graphs did in a test: compiled calls that bound offloaded weights (`Binder.bind` runs
    once per call of a graph that reads them), the bindings each graph served, and the graphs the backend failed to
    compile (Dynamo logs a warning, splits the graph there and runs on: outputs stay right, graphs get smaller)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.calls = 0
        self.bindings: dict[int, set] = {}   # id(Binder) -> {((host group key, byte shift), ...)}
        self.failures: list[str] = []

    def emit(self, record):
        msg = record.getMessage()
        if "Backend compiler `chunkflow` failed" in msg:
            self.failures.append(msg)

    def check_no_failures(self):
        if self.failures:
            pytest.fail(f"the chunkflow backend failed on {len(self.failures)} graph(s) Dynamo gave it (Dynamo split "
                        f"them and ran on); first:\n{self.failures[0]}", pytrace=False)


@pytest.fixture
def chunkflow(monkeypatch):
    seen = Chunkflow()
    orig = Binder.bind

    def bind(self, args):
        entry = orig(self, args)
        binding = entry.binding
        seen.calls += 1
        seen.bindings.setdefault(id(self), set()).add(tuple((g.key, shift) for g, shift in binding))
        return entry

    monkeypatch.setattr(Binder, "bind", bind)
    logger = logging.getLogger("torch._dynamo")
    logger.addHandler(seen)
    try:
        yield seen
    finally:
        logger.removeHandler(seen)


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out.sample


def same(fn, model, inputs, seen=None, calls=2):
    """``fn(**inputs)`` equals the eager output of ``model`` now, on ``calls`` calls, each through chunkflow."""
    with torch.no_grad():
        before = seen.calls if seen is not None else None
        with torch.compiler.set_stance("force_eager"):   # the model as it is, whatever is compiled in it
            ref = _first(model(**inputs))
        assert seen is None or seen.calls == before, "the eager reference ran a chunkflow graph"
        for _ in range(calls):
            before = seen.calls if seen is not None else None
            out = _first(fn(**inputs))
            torch.testing.assert_close(out, ref, **TOL)
            if seen is not None:
                assert seen.calls > before, "the compiled call ran no chunkflow graph"
    return ref


def tiny_flux(**overrides):
    preset = get_preset("flux")
    model = preset.build("cpu", torch.float32, tiny=True, **overrides)
    inputs = preset.inputs(model.config, Workload(height=128, width=128, text_tokens=16), "cpu", torch.float32)
    return model, inputs


# ---------------------------------------------------------------------------------------------------------------
# 1. Regional compilation: one graph per block structure
# ---------------------------------------------------------------------------------------------------------------

def test_flux_compile_repeated_blocks(chunkflow):
    # 2 double- + 3 single-stream blocks. Dynamo compiles single-stream block 0 on its own: its input is laid out
    # differently (a stride guard); blocks 1 and 2 share the next graph.
    model, inputs = tiny_flux(num_layers=2, num_single_layers=3)
    blocks = [*model.transformer_blocks, *model.single_transformer_blocks]
    cfcompile.offload(model, "cpu")
    model.compile_repeated_blocks(backend="chunkflow", options=OPTS)
    same(model, model, inputs, chunkflow, calls=3)
    assert chunkflow.calls >= 3 * len(blocks)   # every block of every call through a chunkflow graph
    gc.collect()   # this model's graphs only: Dynamo's caches can keep an earlier test's graphs alive
    graphs = [g for g in compiled_graphs() if g.reads_from(cfcompile.store_of(model))]
    assert 1 <= len(graphs) < len(blocks), f"{len(graphs)} graphs for {len(blocks)} blocks"
    # between them, the graphs streamed from every block's own host group; some graph served several blocks
    bound = {key for seen in chunkflow.bindings.values() for b in seen for key, _ in b}
    assert bound == {f"transformer_blocks.{i}:float32" for i in range(2)} | \
        {f"single_transformer_blocks.{i}:float32" for i in range(3)}, bound
    assert max(len({key for b in seen for key, _ in b}) for seen in chunkflow.bindings.values()) >= 2
    # a weight of one block changed after compiling: the graph that serves it sees the change, the other blocks
    # keep theirs
    w = model.transformer_blocks[1].attn.to_q.weight
    w.data += 0.1 * torch.randn_like(w)
    same(model, model, inputs, chunkflow)
    with torch.no_grad():
        model.single_transformer_blocks[0].proj_mlp.weight.mul_(1.5)
    same(model, model, inputs, chunkflow)
    assert all(lookup(p) is not None for p in model.parameters())
    chunkflow.check_no_failures()


def test_flux_compile_repeated_blocks_from_four_threads(chunkflow):
    """Requests in flight in one process (the serving runtime's case): four threads call one regionally compiled
    model, so their block calls interleave on the shared graphs and the call order each graph learnt (what its
    wrap-around copies are aimed at) is wrong most of the time. 4 x 10 calls, each equal to its eager output."""
    import threading

    model, _ = tiny_flux(num_layers=2, num_single_layers=3)
    preset = get_preset("flux")
    inputs = [preset.inputs(model.config, Workload(height=64, width=64, text_tokens=8), "cpu", torch.float32)
              for _ in range(4)]   # each thread its own latents and prompt (random)
    with torch.no_grad():
        refs = [_first(model(**x)) for x in inputs]
    cfcompile.offload(model, "cpu")
    model.compile_repeated_blocks(backend="chunkflow", options={**OPTS, "resident_fraction": 0.5})
    same(model, model, inputs[0], chunkflow)
    wrong, errors = [], []

    def worker(i):
        try:
            with torch.no_grad():
                for _ in range(10):
                    if not torch.allclose(_first(model(**inputs[i])), refs[i], **TOL):
                        wrong.append(i)
        except Exception as e:   # noqa: BLE001  (reported below, with the others)
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and wrong == [], (errors[:2], len(wrong))
    chunkflow.check_no_failures()


# ---------------------------------------------------------------------------------------------------------------
# 2. MoE with a graph break at every expert
# ---------------------------------------------------------------------------------------------------------------

def tiny_hidream():
    from diffusers import HiDreamImageTransformer2DModel

    torch.manual_seed(0)
    # inner dim 4 x 8 = 32; the rope axes (4, 2, 2) sum to the head dim; llama_layers names one Llama hidden state
    # per block (2 blocks); caption_channels = [T5 width, Llama width].
    model = HiDreamImageTransformer2DModel(
        patch_size=2, in_channels=4, out_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=4, caption_channels=[8, 4], text_emb_dim=8, num_routed_experts=4,
        num_activated_experts=1, axes_dims_rope=(4, 2, 2), max_resolution=(32, 32), llama_layers=(0, 1)).eval()
    # forward(hidden_states (B, C, H, W) latent, square: patchified inside; timesteps (B,); T5 (B, T, 8);
    # Llama (len(llama_layers), B, T, 4); pooled (B, text_emb_dim))
    B, T = 1, 8
    inputs = dict(hidden_states=torch.randn(B, 4, 8, 8), timesteps=torch.tensor([500]),
                  encoder_hidden_states_t5=torch.randn(B, T, 8), encoder_hidden_states_llama3=torch.randn(2, B, T, 4),
                  pooled_embeds=torch.randn(B, 8), return_dict=False)
    return model, inputs


def test_hidream_moe_with_graph_breaks(chunkflow):
    model, inputs = tiny_hidream()
    cfcompile.offload(model, "cpu")
    fn = torch.compile(model, backend="chunkflow", options=OPTS)
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        same(fn, model, inputs, chunkflow, calls=3)
    # moe_infer breaks the graph at every expert: 2 blocks x 4 experts, and one graph serves the experts (their
    # weights at shifted offsets of their block's host group)
    widest = max(len(b) for b in chunkflow.bindings.values())
    assert widest >= 4, f"no graph served several experts: at most {widest} bindings per graph"
    # weights of one expert and of the shared expert changed after compiling
    w = model.double_stream_blocks[0].block.ff_i.experts[1].w1.weight
    w.data += 0.1 * torch.randn_like(w)
    with torch.no_grad():
        model.single_stream_blocks[0].block.ff_i.shared_experts.w2.weight.mul_(1.5)
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        same(fn, model, inputs, chunkflow)
    assert all(lookup(p) is not None for p in model.parameters())
    chunkflow.check_no_failures()


# ---------------------------------------------------------------------------------------------------------------
# 3. LoRA through diffusers' API
# ---------------------------------------------------------------------------------------------------------------

LORA_FLUX = dict(num_layers=1, num_single_layers=1)   # one block of each kind: every LoRA step recompiles


def lora_state_dict(seed: int, r: int = 4):
    """A random LoRA for the tiny Flux: peft's keys (``...to_q.lora_A.weight``), lora_B non-zero."""
    import peft

    twin, _ = tiny_flux(**LORA_FLUX)
    twin.add_adapter(peft.LoraConfig(r=r, lora_alpha=r, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                     init_lora_weights=False))
    g = torch.Generator().manual_seed(seed)
    sd = peft.get_peft_model_state_dict(twin)
    return {k: (torch.randn(v.shape, generator=g) * 0.2 if "lora_B" in k else v.clone()) for k, v in sd.items()}


def test_flux_lora_load_scale_fuse_unfuse_switch_unload(chunkflow):
    sd_a, sd_b = lora_state_dict(1), lora_state_dict(2, r=2)
    model, inputs = tiny_flux(**LORA_FLUX)
    cfcompile.offload(model, "cpu")
    fn = torch.compile(model, backend="chunkflow", options=OPTS)
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        base = same(fn, model, inputs, chunkflow)

        model.load_lora_adapter(sd_a, adapter_name="a", prefix=None)
        with_a = same(fn, model, inputs, chunkflow)
        assert not torch.allclose(with_a, base, **TOL), "the LoRA changes nothing: the test would see nothing"
        model.set_adapters(["a"], weights=[0.5])
        half_a = same(fn, model, inputs, chunkflow)

        model.fuse_lora(lora_scale=1.0)              # adds the delta into the offloaded base weights, in place
        fused = same(fn, model, inputs, chunkflow)
        model.unfuse_lora()                          # subtracts it again
        torch.testing.assert_close(same(fn, model, inputs, chunkflow), half_a, **TOL)

        model.load_lora_adapter(sd_b, adapter_name="b", prefix=None)
        model.set_adapters(["b"])
        with_b = same(fn, model, inputs, chunkflow)
        model.set_adapters(["a"])
        torch.testing.assert_close(same(fn, model, inputs, chunkflow), with_a, **TOL)

        model.unload_lora()
        after = same(fn, model, inputs, chunkflow)
    torch.testing.assert_close(after, base, **TOL)   # the base weights are as they were
    assert not torch.allclose(with_b, with_a, **TOL) and not torch.allclose(fused, base, **TOL)
    assert all(lookup(p) is not None for p in model.parameters())
    chunkflow.check_no_failures()


# ---------------------------------------------------------------------------------------------------------------
# 4. Refusals
# ---------------------------------------------------------------------------------------------------------------

def _state(model):
    return {n: (p.dtype, p.data_ptr()) for n, p in model.named_parameters()}


def test_flux_casting_and_group_offload_refused():
    # hooks present at offload time: refused, nothing changed
    hooks = {
        "enable_layerwise_casting": lambda m: m.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn,
                                                                         compute_dtype=torch.float32),
        "enable_group_offload": lambda m: m.enable_group_offload(onload_device=torch.device("cpu"),
                                                                 offload_type="block_level", num_blocks_per_group=1),
    }
    for name, enable in hooks.items():
        model, inputs = tiny_flux()
        enable(model)
        before = _state(model)
        with pytest.raises(ValueError, match=name):
            cfcompile.offload(model, "cpu")
        assert cfcompile.store_of(model) is None and _state(model) == before
        assert all(type(p) is torch.nn.Parameter for p in model.parameters())

    # after offload: refused before anything moves
    model, inputs = tiny_flux()
    with torch.no_grad():
        ref = _first(model(**inputs))
    store = cfcompile.offload(model, "cpu")
    before = _state(model)

    def unchanged():
        assert _state(model) == before
        assert cfcompile.store_of(model) is store
        assert all(lookup(p) is not None for p in model.parameters())
        with torch.no_grad():
            torch.testing.assert_close(_first(model(**inputs)), ref, rtol=0, atol=0)

    with pytest.raises(ValueError, match="restore"):
        model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    unchanged()
    hooked = [n for n, m in model.named_modules() if getattr(getattr(m, "_diffusers_hook", None), "hooks", None)]
    assert hooked == [], f"the refused layerwise casting left hooks on {hooked}"
    with pytest.raises(ValueError, match="restore"):
        model.to(torch.bfloat16)
    unchanged()
    with pytest.raises(ValueError, match="restore"):
        model.half()
    unchanged()
