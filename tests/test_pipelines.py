"""`cfcompile.apply` / `cfcompile.restore` on whole diffusers pipelines: tiny Flux, Qwen-Image and Wan 2.2 (two
experts) built from small configs with random weights and locally built tokenizers (`cfcompile.tiny_pipelines`),
on the CPU.

For each pipeline: the applied pipeline gives the plain pipeline's images (same seed), every model component is
offloaded, every compiled component ran through a chunkflow graph that streamed its weights, and `restore` gives
the plain pipeline back (ordinary parameters with the same values, nothing compiled, the same images).
Wan's VAE is left eager here (``eager=("vae",)``): its frame-by-frame decoder is the slowest C++ compile of all on
a CPU; Flux's and Qwen-Image's VAEs are compiled.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import cfcompile  # noqa: E402
from cfcompile import pipelines  # noqa: E402
from cfcompile.compiler.backend import compiled_graphs  # noqa: E402
from cfcompile.offload import HostParameter, lookup, store_of  # noqa: E402
from cfcompile.runtime.binding import Binder  # noqa: E402
from cfcompile.tiny_pipelines import TINY_CALLS, tiny_pipeline  # noqa: E402

OPTIONS = dict(memory_budget="256MiB")   # examples/*.py --tiny use the same: their graphs hit the FX graph cache


def run(pipe, name: str) -> torch.Tensor:
    out = pipe(prompt="a photo of a cat", generator=torch.Generator().manual_seed(0), output_type="pt",
               **TINY_CALLS[name])
    return out.frames if hasattr(out, "frames") else out.images


def modules(pipe) -> dict[str, nn.Module]:
    return {k: v for k, v in pipe.components.items() if isinstance(v, nn.Module)}


def snapshot(pipe) -> dict:
    return {(c, n): (p.device, p.dtype, p.detach().clone())
            for c, m in modules(pipe).items() for n, p in m.named_parameters()}


@pytest.fixture
def bound(monkeypatch) -> list:
    """The host groups every chunkflow call streamed from (`Binder.bind` runs once per call of a graph that reads
    offloaded weights; a block graph serves every block of its structure, of either Wan expert)."""
    seen: list = []
    orig = Binder.bind

    def bind(self, args):
        entry = orig(self, args)
        binding = entry.binding
        seen.extend(g for g, _ in binding)
        return entry

    monkeypatch.setattr(Binder, "bind", bind)
    return seen


def streamed(pipe, groups) -> set[str]:
    """The components whose weights were streamed from ``groups``."""
    owner = {id(g): c for c, m in modules(pipe).items() if store_of(m) for g in store_of(m).groups}
    return {owner[id(g)] for g in groups if id(g) in owner}


# Qwen-Image's Qwen2.5-VL text encoder runs eagerly here (offloaded, not compiled): compiling it whole costs ~2 CPU
# minutes of Inductor and tests nothing the Flux case's CLIP and T5 (compiled whole) do not.
# SD3: its transformer has no _repeated_blocks in diffusers 0.42 (compiled whole); its three text encoders and VAE
# are the Flux case's classes, run eagerly here.
@pytest.mark.parametrize("name, eager", [("flux", ()), ("qwen-image", ("text_encoder",)), ("wan2.2", ("vae",)),
                                         ("sd3", ("text_encoder", "text_encoder_2", "text_encoder_3", "vae"))])
def test_apply_gives_the_plain_images_and_restore_the_plain_pipeline(name, eager, bound):
    pipe = tiny_pipeline(name)
    plain = run(pipe, name)
    before = snapshot(pipe)

    cfcompile.apply(pipe, device="cpu", eager=eager, **OPTIONS)
    record = pipe._cfcompile_applied
    for c, m in modules(pipe).items():
        assert store_of(m) is not None, f"{c} not offloaded"
        assert all(lookup(p) is not None for p in m.parameters()), f"{c}: a weight outside the host store"
    assert record.summary() == {c: "eager" if c in eager else "vae" if c == "vae" else
                                "regional" if getattr(m, "_repeated_blocks", None) else "whole"
                                for c, m in modules(pipe).items()}
    assert isinstance(record.budget, cfcompile.MemoryBudget)

    torch.testing.assert_close(run(pipe, name), plain, rtol=1e-4, atol=1e-4)
    assert streamed(pipe, bound) == set(modules(pipe)) - set(eager)   # every compiled component through chunkflow
    for c, m in modules(pipe).items():   # the budget's resident room is the denoisers': the rest streams everything
        if c.startswith("transformer") or c in eager:   # (one block graph serves both Wan experts: not per expert)
            continue
        graphs = [g for g in compiled_graphs() if g.reads_from(store_of(m))]
        assert graphs and all(g.plan.total_resident_bytes == 0 and g.config.max_resident_fraction == 0
                              for g in graphs), c
    torch.testing.assert_close(run(pipe, name), plain, rtol=1e-4, atol=1e-4)   # compiled graphs again
    usage = record.budget.usage()   # one budget over all graphs (a block graph serves both Wan experts)
    assert usage["graphs"] >= min(2, len(set(modules(pipe)) - set(eager)))
    assert 0 < usage["peak_bytes"] <= cfcompile.parse_bytes(OPTIONS["memory_budget"])

    cfcompile.restore(pipe)
    assert not hasattr(pipe, "_cfcompile_applied")
    after = snapshot(pipe)
    assert after.keys() == before.keys()
    for key, (device, dtype, value) in before.items():
        assert after[key][:2] == (device, dtype), key
        torch.testing.assert_close(after[key][2], value, rtol=0, atol=0)
    for c, m in modules(pipe).items():
        assert store_of(m) is None
        assert not any(isinstance(p, HostParameter) for p in m.parameters())
        assert all(getattr(s, "_compiled_call_impl", None) is None for s in m.modules()), c
    assert not any(not run_.runtime.closed for run_ in compiled_graphs()), "a graph kept device memory"
    torch.testing.assert_close(run(pipe, name), plain, rtol=0, atol=0)


# -- what apply refuses, and that it leaves nothing half-done (nothing here compiles: compiling is lazy) ----------

@pytest.fixture(scope="module")
def flux():
    return tiny_pipeline("flux")


def plain_state(pipe) -> bool:
    return (not hasattr(pipe, "_cfcompile_applied")
            and all(store_of(m) is None and type(p) is nn.Parameter and p.device.type == "cpu"
                    and all(getattr(s, "_compiled_call_impl", None) is None for s in m.modules())
                    for m in modules(pipe).values() for p in m.parameters()))


@pytest.mark.parametrize("kwargs, match", [
    (dict(chunk_sise="1MiB"), r"unknown chunkflow option.*chunk_sise.*device= and regional="),
    (dict(memory_budget="12GiB", resident_fraction=0.5), "cannot be used together"),
    (dict(eager=("vea",)), r"eager=\['vea'\] names no model component.*'vae'"),
    (dict(device="mps"), "only 'cuda' and 'cpu'"),
])
def test_bad_arguments_change_nothing(flux, kwargs, match):
    kwargs = {"device": "cpu", **kwargs}
    with pytest.raises(ValueError, match=match):
        cfcompile.apply(flux, **kwargs)
    assert plain_state(flux)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when CUDA is missing")
def test_cuda_without_a_gpu_says_to_use_cpu(flux):
    with pytest.raises(ValueError, match="CUDA is not available.*device='cpu'"):
        cfcompile.apply(flux)   # device="cuda" by default
    assert plain_state(flux)


def test_nothing_to_apply_to():
    class Empty:
        components = {"scheduler": object(), "tokenizer": None}

    with pytest.raises(ValueError, match="no torch.nn.Module component"):
        cfcompile.apply(Empty(), device="cpu")
    with pytest.raises(TypeError, match="diffusers pipeline .* or a torch.nn.Module"):
        cfcompile.apply(object(), device="cpu")
    with pytest.raises(ValueError, match="not given to cfcompile.apply"):
        cfcompile.restore(Empty())


def test_twice_compiled_or_restored_alone_is_refused(flux):
    cfcompile.apply(flux, device="cpu")
    try:
        with pytest.raises(ValueError, match=r"already applied; call cfcompile.restore"):
            cfcompile.apply(flux, device="cpu")
        with pytest.raises(ValueError, match=r"component 'transformer' of a pipeline .* cfcompile.restore\(pipe\)"):
            cfcompile.restore(flux.transformer)
        with pytest.raises(ValueError, match="already under cfcompile.apply"):
            cfcompile.apply(flux.vae, device="cpu")
    finally:
        cfcompile.restore(flux)
    assert plain_state(flux)
    flux.text_encoder.compile()
    try:
        with pytest.raises(ValueError, match="'text_encoder' is already compiled"):
            cfcompile.apply(flux, device="cpu")
        assert plain_state(flux) is False and store_of(flux.transformer) is None
    finally:
        flux.text_encoder._compiled_call_impl = None
    assert plain_state(flux)


def test_an_error_part_way_undoes_what_was_done(flux, monkeypatch):
    real, done = pipelines.offload, []

    def offload(module, device):
        if module is flux.transformer:
            raise MemoryError("no room (test)")
        done.append(module)
        return real(module, device)

    monkeypatch.setattr(pipelines, "offload", offload)
    with pytest.raises(MemoryError, match="no room"):
        cfcompile.apply(flux, device="cpu")
    assert len(done) >= 1   # some components were offloaded (and compiled) before the failure...
    assert plain_state(flux)   # ... and are plain again


def test_a_single_module_and_a_component_offloaded_before(flux):
    vae = flux.vae
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        ref = vae.decode(x).sample
    cfcompile.offload(flux.text_encoder, "cpu")   # the user's: stays offloaded after restore
    try:
        assert cfcompile.apply(vae, device="cpu", chunk_size="64KiB") is vae
        assert vae._cfcompile_applied.summary() == {"AutoencoderKL": "vae"}
        assert vae.decoder._compiled_call_impl is not None and store_of(vae) is not None
        cfcompile.restore(vae)
        assert store_of(vae) is None and vae.decoder._compiled_call_impl is None
        with torch.no_grad():
            torch.testing.assert_close(vae.decode(x).sample, ref, rtol=0, atol=0)

        cfcompile.apply(flux, device="cpu")
        assert store_of(flux.text_encoder) is not None and store_of(flux.vae) is not None
        cfcompile.restore(flux)
        assert store_of(flux.text_encoder) is not None, "restore undid an offload that apply did not do"
        assert store_of(flux.vae) is None and flux.text_encoder._compiled_call_impl is None
    finally:
        if store_of(flux.text_encoder) is not None:
            cfcompile.restore(flux.text_encoder)
    assert plain_state(flux)
