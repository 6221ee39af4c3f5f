"""cfcompile._compat: the Dynamo rule torch 2.11 lacks, reproduced on the torch installed here by removing it."""

from __future__ import annotations

import pytest
import torch

from dist_harness import run_distributed


def _gather_breaks(rank: int, world: int) -> dict:
    """Compile a gather along dim 1 (diffusers' Ulysses output gather) without the rule, then with it."""
    import torch.distributed as dist
    import torch.distributed._functional_collectives as funcol
    from torch._dynamo import trace_rules
    from torch._dynamo.utils import counters

    from cfcompile import _compat

    def gather(x):
        return funcol.all_gather_tensor(x * 2, 1, dist.group.WORLD) + 1

    def breaks_and_out():
        torch._dynamo.reset()
        counters.clear()
        out = torch.compile(gather, backend="eager")(x)
        out = out.wait() if isinstance(out, funcol.AsyncCollectiveTensor) else out
        return sum(counters["graph_break"].values()), out

    x = torch.arange(6.0).reshape(2, 3) + 10 * rank
    trace_rules.manual_torch_name_rule_map.pop(_compat._CHUNK_CAT, None)   # torch 2.11's rules
    trace_rules.get_torch_obj_rule_map.cache_clear()
    before, out_before = breaks_and_out()
    added, again = _compat.inline_chunk_cat(), _compat.inline_chunk_cat()
    after, out_after = breaks_and_out()
    return dict(before=before, after=after, added=added, again=again, equal=torch.equal(out_before, out_after),
                expected=torch.equal(out_after, torch.cat([torch.arange(6.0).reshape(2, 3) + 10 * r
                                                           for r in range(world)], 1) * 2 + 1))


@pytest.mark.timeout(300)
def test_gather_along_a_later_dim_stays_in_one_graph():
    for r in run_distributed(_gather_breaks, 2, timeout=240):
        assert r["before"] >= 1, f"without the rule Dynamo should break the graph (torch 2.11's behaviour): {r}"
        assert r["added"] and not r["again"], r
        assert r["after"] == 0 and r["equal"] and r["expected"], r


def test_context_parallel_warning_stays_out_of_graphs(monkeypatch):
    """diffusers' split hook calls ``logger.warning_once`` inside the forward (Wan: every block). Replaced, it
    warns once in eager mode (also without transformers, which defines the method) and is skipped in a trace."""
    import logging

    cp = pytest.importorskip("diffusers.hooks.context_parallel")
    from cfcompile import _compat

    # diffusers' own logger (an earlier cfcompile.offload in this process may have replaced it); restored after
    monkeypatch.setattr(cp, "logger", getattr(cp.logger, "_logger", cp.logger))
    assert _compat.quiet_context_parallel_warnings() and not _compat.quiet_context_parallel_warnings()

    def forward(x):
        cp.logger.warning_once("split will not be applied")
        return x * 2

    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    cp.logger.addHandler(handler)            # diffusers' loggers do not propagate to the root (caplog's)
    try:
        forward(torch.ones(2))
        forward(torch.ones(2))
        torch._dynamo.reset()
        out = torch.compile(forward, backend="eager", fullgraph=True)(torch.ones(2))   # fullgraph: no break allowed
    finally:
        cp.logger.removeHandler(handler)
    assert torch.equal(out, torch.full((2,), 2.0))
    assert seen.count("split will not be applied") == 1, seen
