"""Ulysses over a LogicalGroup (cfcompile.elastic.ulysses) on tiny diffusers models, 2 and 4 gloo processes.

Every rank builds the same model (seeded) and inputs; the reference is one process running the plain model. The
same model object then runs with other groups, including a group of one (unsplit), without being rebuilt; compiled,
it compiles once per group size (the ranks are a run-time value). Qwen-Image runs with a text mask too.
"""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from cfcompile.presets import Workload, get_preset  # noqa: E402
from dist_harness import forbid_new_groups, run_distributed  # noqa: E402

# 64 x 64 px -> 16 image tokens, 8 text tokens for Flux: both split over 2 ranks.
WORKLOAD = Workload(height=64, width=64, text_tokens=8, sp_degree=2)


def _model_and_inputs(name="flux"):
    preset = get_preset(name)
    model = preset.build("cpu", torch.float32, tiny=True)  # seeds 0 itself: the same weights in every process
    return model, preset.inputs(model.config, WORKLOAD, "cpu", torch.float32)


@pytest.fixture(scope="module")
def reference():
    model, inputs = _model_and_inputs()
    with torch.no_grad():
        return model(**inputs)[0]


def _two_rank_worker(rank, world):
    from torch._dynamo.utils import counters

    from cfcompile.elastic import form_group, set_ulysses_group, ulysses

    forbid_new_groups()
    model, inputs = _model_and_inputs()
    out = {}
    out["pair"], out["pair_a2a"] = _count_a2a(model, inputs, form_group((0, 1)))
    with torch.no_grad():
        out["after_context"] = model(**inputs)[0]           # the context restored "no group": unsplit
        with ulysses(model, form_group((rank,))):           # alone: each rank a group of one
            out["alone"] = model(**inputs)[0]
        with ulysses(model, form_group((1, 0))):            # the other order: rank 1 holds the first shard
            out["reversed"] = model(**inputs)[0]
        # compiled with the aot_eager backend: one graph, no break; the group's ranks are a run-time value, so
        # the other order runs the same graph, and only another size (a group of one) compiles again
        torch._dynamo.reset()
        counters.clear()
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        set_ulysses_group(model, form_group((0, 1)))
        out["compiled_pair"] = compiled(**inputs)[0]
        set_ulysses_group(model, form_group((1, 0)))
        out["compiled_reversed"] = compiled(**inputs)[0]
        out["frames_one_size"] = counters["stats"]["unique_graphs"]
        set_ulysses_group(model, form_group((rank,)))
        out["compiled_alone"] = compiled(**inputs)[0]
        set_ulysses_group(model, form_group((0, 1)))
        out["compiled_pair_again"] = compiled(**inputs)[0]
        set_ulysses_group(model, None)
        out["graph_breaks"] = dict(counters["graph_break"])
        out["frames"] = counters["stats"]["unique_graphs"]
        # bad input: a group without this rank; a sequence that does not split over the group
        errors = []
        for call in (lambda: set_ulysses_group(model, form_group((1 - rank,))),
                     lambda: set_ulysses_group(model, (0, 1)),
                     lambda: _run(model, {**inputs, "encoder_hidden_states": inputs["encoder_hidden_states"][:, :7],
                                          "txt_ids": inputs["txt_ids"][:7]}, form_group((0, 1)))):
            try:
                call()
            except (ValueError, TypeError) as e:
                errors.append(str(e))
        out["errors"] = errors
    return out


def _run(model, inputs, group):
    from cfcompile.elastic import ulysses

    with ulysses(model, group):
        return model(**inputs)[0]


class _count_ops(torch.utils._python_dispatch.TorchDispatchMode):
    """Records every op dispatched inside (to count the all-to-alls over the logical group)."""

    def __init__(self, calls):
        super().__init__()
        self.calls = calls

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls.append(func)
        return func(*args, **(kwargs or {}))


@pytest.mark.timeout(180)
def test_ulysses_flux_two_ranks_then_alone(reference):
    res = run_distributed(_two_rank_worker, 2, timeout=160)
    cfg = get_preset("flux").tiny_config
    attentions = cfg["num_layers"] + cfg["num_single_layers"]
    for r in res:
        for key in ("pair", "after_context", "alone", "reversed", "compiled_pair", "compiled_reversed",
                    "compiled_alone", "compiled_pair_again"):
            torch.testing.assert_close(r[key], reference, rtol=1e-5, atol=1e-5, msg=lambda m: f"{key}: {m}")
        assert r["pair_a2a"] == 4 * attentions  # q, k, v in and the output back, over the logical group
        # one graph per group size, no break: (0, 1) and (1, 0) share one, the group of one has its own
        frames = {k: r[k] for k in ("graph_breaks", "frames_one_size", "frames")}
        assert frames == {"graph_breaks": {}, "frames_one_size": 1, "frames": 2}, frames
        assert len(r["errors"]) == 3, r["errors"]
        assert "is not in the group" in r["errors"][0]
        assert "expected a LogicalGroup" in r["errors"][1]
        assert "a sequence of 7 along dim 1 does not split evenly over the 2 ranks" in r["errors"][2]


def _count_a2a(model, inputs, group, op="all_to_all_single") -> tuple[torch.Tensor, int]:
    calls = []
    with torch.no_grad(), _count_ops(calls):
        out = _run(model, inputs, group)
    return out, sum(1 for f in calls if f is getattr(torch.ops.cfcompile_elastic, op).default)


def _text_mask():
    mask = torch.ones(1, WORKLOAD.text_tokens, dtype=torch.bool)
    mask[:, 1] = mask[:, 5:] = False  # padding in both halves of the text: each rank's shard masks something
    return mask


def _other_models_worker(rank, world, names):
    from torch._dynamo.utils import counters

    from cfcompile.elastic import form_group, set_ulysses_group

    forbid_new_groups()
    out = {name: _count_a2a(*_model_and_inputs(name), form_group((0, 1))) for name in names}
    # Qwen-Image with a text mask: diffusers' Ulysses attention all-gathers each rank's mask shard (routed to ours)
    model, inputs = _model_and_inputs("qwen-image")
    inputs = {**inputs, "encoder_hidden_states_mask": _text_mask()}
    out["mask"], out["mask_gathers"] = _count_a2a(model, inputs, form_group((0, 1)), "all_gather")
    with torch.no_grad():
        torch._dynamo.reset()
        counters.clear()
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        for ranks in ((0, 1), (1, 0)):
            set_ulysses_group(model, form_group(ranks))
            out["mask_compiled", ranks] = compiled(**inputs)[0]
    out["mask_frames"], out["mask_breaks"] = counters["stats"]["unique_graphs"], dict(counters["graph_break"])
    return out


OTHER_MODELS = {"wan": 2, "qwen-image": 2}  # self-attentions of the tiny configs (Wan's cross-attention is local)


@pytest.mark.timeout(240)
def test_ulysses_wan_and_qwen_image_two_ranks():
    res = run_distributed(_other_models_worker, 2, args=(list(OTHER_MODELS),), timeout=220)
    for name, attentions in OTHER_MODELS.items():
        model, inputs = _model_and_inputs(name)
        with torch.no_grad():
            ref = model(**inputs)[0]
        for r in res:
            out, a2a = r[name]
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
            assert a2a == 4 * attentions, (name, a2a)
    with torch.no_grad():
        ref = model(**{**inputs, "encoder_hidden_states_mask": _text_mask()})[0]
    assert (ref - model(**inputs)[0]).abs().max() > 1e-3  # the mask matters (else this test proves nothing)
    for r in res:
        for key in ("mask", ("mask_compiled", (0, 1)), ("mask_compiled", (1, 0))):
            torch.testing.assert_close(r[key], ref, rtol=1e-5, atol=1e-5, msg=lambda m: f"{key}: {m}")
        # one mask gather per attention, plus the output's gather
        assert r["mask_gathers"] == OTHER_MODELS["qwen-image"] + 1, r["mask_gathers"]
        assert (r["mask_frames"], r["mask_breaks"]) == (1, {}), (r["mask_frames"], r["mask_breaks"])


def _diffusers_cp_worker(rank, world):
    import diffusers.models.attention_dispatch as ad
    import torch.distributed._functional_collectives as funcol
    from diffusers import ContextParallelConfig

    from cfcompile.elastic import enable_ulysses

    enable_ulysses(_model_and_inputs("qwen-image")[0])      # routes diffusers' collectives for the process
    from dist_harness import cpu_context_parallel_shim

    cpu_context_parallel_shim()                             # as in test_ulysses.py: diffusers divides by this
    model, inputs = _model_and_inputs("qwen-image")
    model.enable_parallelism(config=ContextParallelConfig(ulysses_degree=world))
    inputs = {**inputs, "encoder_hidden_states_mask": _text_mask()}
    out = {"routed": getattr(ad.dist, "_cfcompile_elastic", False)}
    with torch.no_grad():
        for mode, fn in (("eager", model), ("compiled", torch.compile(model, backend="aot_eager"))):
            y = fn(**inputs)[0]
            out[mode] = y.wait() if isinstance(y, funcol.AsyncCollectiveTensor) else y
    return out


@pytest.mark.timeout(180)
def test_diffusers_own_ulysses_with_a_mask_still_works():
    # process groups still reach torch.distributed through the routes (a mask: dist.all_gather over the mesh group)
    res = run_distributed(_diffusers_cp_worker, 2, timeout=160)
    model, inputs = _model_and_inputs("qwen-image")
    with torch.no_grad():
        ref = model(**{**inputs, "encoder_hidden_states_mask": _text_mask()})[0]
    for r in res:
        assert r["routed"]
        for key in ("eager", "compiled"):
            torch.testing.assert_close(r[key], ref, rtol=1e-5, atol=1e-5, msg=lambda m: f"{key}: {m}")


def _four_rank_worker(rank, world):
    from torch._dynamo.utils import counters

    from cfcompile.elastic import form_group, set_ulysses_group

    forbid_new_groups()
    model, inputs = _model_and_inputs()
    group = form_group((1, 3) if rank in (1, 3) else (2, 0))  # two requests at once, each on its own pair
    out = {"eager": _count_a2a(model, inputs, group)}
    # compiled: each rank changes partner between steps; one graph per group size (pairs, then groups of one)
    steps = [((0, 1), (2, 3)), ((0, 2), (3, 1)), ((2, 1), (0, 3)), ((0,), (1,), (2,), (3,)), ((1, 0), (3, 2))]
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        for step in steps:
            set_ulysses_group(model, form_group(next(g for g in step if rank in g)))
            out[step] = compiled(**inputs)[0]
            out[step, "frames"] = counters["stats"]["unique_graphs"]
    return out


@pytest.mark.timeout(300)
def test_ulysses_two_groups_concurrently_on_four_ranks(reference):
    res = run_distributed(_four_rank_worker, 4, timeout=280)
    cfg = get_preset("flux").tiny_config
    for r in res:
        out, a2a = r["eager"]
        torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
        assert a2a == 4 * (cfg["num_layers"] + cfg["num_single_layers"])
        steps = [k for k in r if isinstance(k, tuple) and k[-1] != "frames"]
        for step in steps:
            torch.testing.assert_close(r[step], reference, rtol=1e-5, atol=1e-5, msg=lambda m: f"{step}: {m}")
        # three pairings of size 2 share a graph; groups of one compile once; back to pairs: no compile
        frames = [r[step, "frames"] for step in steps]
        assert frames == [1, 1, 1, 2, 2], frames


def test_model_without_a_cp_plan_is_refused():
    from cfcompile.elastic import enable_ulysses

    with pytest.raises(ValueError, match="has no _cp_plan"):
        enable_ulysses(torch.nn.Linear(2, 2))


def _async_gather_worker(rank, world):
    import torch.distributed as dist

    from cfcompile.elastic import form_group
    from cfcompile.elastic.ulysses import _dist_for_diffusers

    routed = _dist_for_diffusers(dist)
    parts = [torch.empty(3) for _ in range(world)]
    handle = routed.all_gather(parts, torch.full((3,), float(rank)), group=form_group((1, 0)), async_op=True)
    return handle.wait(), handle.is_completed(), [p[0].item() for p in parts]


@pytest.mark.timeout(120)
def test_async_all_gather_over_a_logical_group_returns_a_completed_handle():
    # group (1, 0): rank 1's tensor comes first
    assert run_distributed(_async_gather_worker, 2, timeout=100) == [(True, True, [1.0, 0.0])] * 2
