"""Ulysses over a LogicalGroup (cfcompile.elastic.ulysses) on tiny diffusers models, 2 and 4 gloo processes.

Every rank builds the same model (seeded) and inputs; the reference is one process running the plain model. The
same model object then runs with other groups, including a group of one (unsplit), without being rebuilt.
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
        # compiled with the aot_eager backend: one graph, no break; a new group recompiles the same model
        torch._dynamo.reset()
        counters.clear()
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        set_ulysses_group(model, form_group((0, 1)))
        out["compiled_pair"] = compiled(**inputs)[0]
        set_ulysses_group(model, form_group((rank,)))
        out["compiled_alone"] = compiled(**inputs)[0]
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
        for key in ("pair", "after_context", "alone", "reversed", "compiled_pair", "compiled_alone"):
            torch.testing.assert_close(r[key], reference, rtol=1e-5, atol=1e-5, msg=lambda m: f"{key}: {m}")
        assert r["pair_a2a"] == 4 * attentions  # q, k, v in and the output back, over the logical group
        assert r["graph_breaks"] == {} and r["frames"] == 2, r  # one graph per group, no break
        assert len(r["errors"]) == 3, r["errors"]
        assert "is not in the group" in r["errors"][0]
        assert "expected a LogicalGroup" in r["errors"][1]
        assert "a sequence of 7 along dim 1 does not split evenly over the 2 ranks" in r["errors"][2]


def _count_a2a(model, inputs, group) -> tuple[torch.Tensor, int]:
    calls = []
    with torch.no_grad(), _count_ops(calls):
        out = _run(model, inputs, group)
    return out, sum(1 for f in calls if f is torch.ops.cfcompile_elastic.all_to_all_single.default)


def _other_models_worker(rank, world, names):
    from cfcompile.elastic import form_group

    out = {name: _count_a2a(*_model_and_inputs(name), form_group((0, 1))) for name in names}
    model, inputs = _model_and_inputs("qwen-image")
    try:  # a text mask would be all-gathered by diffusers over a process group: refused with a clear error
        _run(model, {**inputs, "encoder_hidden_states_mask": torch.ones(1, 8)}, form_group((0, 1)))
    except NotImplementedError as e:
        out["mask_error"] = str(e)
    return out


OTHER_MODELS = {"wan": 2, "qwen-image": 2}  # self-attentions of the tiny configs (Wan's cross-attention is local)


@pytest.mark.timeout(180)
def test_ulysses_wan_and_qwen_image_two_ranks():
    res = run_distributed(_other_models_worker, 2, args=(list(OTHER_MODELS),), timeout=160)
    for name, attentions in OTHER_MODELS.items():
        model, inputs = _model_and_inputs(name)
        with torch.no_grad():
            ref = model(**inputs)[0]
        for r in res:
            out, a2a = r[name]
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
            assert a2a == 4 * attentions, (name, a2a)
    assert "encoder_hidden_states_mask; attention masks are not supported" in res[0]["mask_error"]


def _four_rank_worker(rank, world):
    from cfcompile.elastic import form_group

    forbid_new_groups()
    group = form_group((1, 3) if rank in (1, 3) else (2, 0))  # two requests at once, each on its own pair
    return _count_a2a(*_model_and_inputs(), group)


@pytest.mark.timeout(180)
def test_ulysses_two_groups_concurrently_on_four_ranks(reference):
    res = run_distributed(_four_rank_worker, 4, timeout=160)
    cfg = get_preset("flux").tiny_config
    for out, a2a in res:
        torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
        assert a2a == 4 * (cfg["num_layers"] + cfg["num_single_layers"])


def test_model_without_a_cp_plan_is_refused():
    from cfcompile.elastic import enable_ulysses

    with pytest.raises(ValueError, match="has no _cp_plan"):
        enable_ulysses(torch.nn.Linear(2, 2))
