"""Chunk copies around collectives (issue: communication-aware scheduling), single process with a fake process
group: functional all-to-alls as diffusers' Ulysses attention issues them."""

import json

import pytest
import torch
import torch.distributed as dist
from torch._inductor.utils import run_and_get_code

import cfcompile
from cfcompile.compiler.backend import compiled_graphs
from cfcompile.compiler.rewrite import clobbers
from cfcompile.compiler.verify import check_generated_order
from toy import sp_toy


@pytest.fixture(scope="module")
def group():
    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=2)
    yield dist.group.WORLD
    dist.destroy_process_group()


def fake_all_to_all_copies(group) -> bool:
    """Whether the fake group's all-to-all returns its input (torch 2.13 and later). On 2.11 it returns uninitialized
    memory, so eager and compiled outputs are garbage (NaN, or different each call) and only the schedule can be
    checked there; real all-to-alls are compared with eager in test_elastic_compile.py and on the GPU."""
    import torch.distributed._functional_collectives as funcol

    x = torch.arange(8.0).reshape(4, 2)
    return all(torch.equal(funcol.wait_tensor(funcol.all_to_all_single(x, None, None, group)), x) for _ in range(3))


@pytest.fixture
def slow_link(tmp_path):
    # Copies and all-to-alls of comparable length, so copies would run into the collectives' windows.
    path = tmp_path / "pcie.json"
    path.write_text(json.dumps(dict(name="pcie", matmul_tflops=0.01, memory_gbs=5.0, h2d_gbs=0.05, h2d_latency_us=0,
                                    kernel_overhead_us=0, link_gbs=0.002, link_shares_h2d=True)))
    return str(path)


def compile_sp(group, options):
    m, x = sp_toy(group)
    with torch.no_grad():
        eager = m(x)
    cfcompile.offload(m, "cpu")
    defaults = {} if options.get("schedule") == "layerwise" else {"chunk_size": 4096, "wrap_around": False}
    fn = torch.compile(m, backend="chunkflow", options={**defaults, **options})
    with torch.no_grad():
        out, code = run_and_get_code(fn, x)
    assert out.shape == eager.shape
    if fake_all_to_all_copies(group):
        torch.testing.assert_close(out, eager)
    return compiled_graphs()[-1], code[0]


def call_lines(code):
    body = code[code.index("def call(self, args):"):]
    return [line.strip() for line in body.splitlines()]


def windows_in_code(lines):
    """(launch line, wait line) of each all-to-all in the generated code."""
    out, open_ = [], {}
    for i, line in enumerate(lines):
        if "= torch.ops._c10d_functional.all_to_all_single.default(" in line:
            open_[line.split("=")[0].strip()] = i
        elif line.startswith("torch.ops._c10d_functional.wait_tensor.default("):
            arg = line.split("wait_tensor.default(")[1].split(")")[0].strip()
            if arg in open_:
                out.append((open_.pop(arg), i))
    return out


def chunk_starts_in_windows(prediction):
    return [(g.key, t) for g in prediction.groups for t in g.chunk_starts
            for lo, hi in prediction.windows if lo < t < hi - 1e-9]


@pytest.mark.timeout(600)
def test_yield_keeps_copies_out_of_collective_windows(group, slow_link):
    g, code = compile_sp(group, {"profile": slow_link, "collective_policy": "yield"})
    plan, prediction, costs = g.plan, g.prediction, g.costs
    assert plan.collective_policy == "yield" and len(costs.collectives) == 4 * 4
    assert {c.kind for c in costs.collectives} == {"all_to_all_single"} and costs.collectives[0].group_size == 2
    assert any(grp.segments for grp in plan.streamed), "some copies should have moved behind a collective"
    # In the generated code no prefetch is issued between an all-to-all's launch and its wait ...
    lines = call_lines(code)
    windows = windows_in_code(lines)
    assert len(windows) == 16
    prefetches = [i for i, line in enumerate(lines) if line.startswith("torch.ops.cfcompile.prefetch_")]
    assert not [(p, w) for p in prefetches for w in windows if w[0] < p < w[1]]
    assert check_generated_order(code, list(g.layout.slots), clobbers(plan)) == []
    # ... and in the model's timeline no chunk copy starts inside a window.
    assert prediction.windows and not chunk_starts_in_windows(prediction)


@pytest.mark.timeout(600)
def test_overlap_lets_copies_run_under_collectives(group, slow_link):
    g, _ = compile_sp(group, {"profile": slow_link, "collective_policy": "overlap"})
    assert not any(grp.segments for grp in g.plan.streamed)
    assert chunk_starts_in_windows(g.prediction)


@pytest.mark.timeout(600)
def test_layerwise_baseline_copies_whole_blocks_one_ahead(group):
    g, _ = compile_sp(group, {"schedule": "layerwise"})
    plan = g.plan
    assert plan.schedule == "layerwise" and plan.total_resident_bytes == 0
    assert all(len(grp.copies) == 1 and not grp.segments and grp.wrap_before is None for grp in plan.streamed)
    assert [grp.issue_before for grp in plan.streamed] == [None, *range(len(plan.streamed) - 1)]


@pytest.mark.timeout(600)
def test_on_a_shared_path_yield_is_predicted_faster_than_overlap(group, slow_link):
    y, _ = compile_sp(group, {"profile": slow_link, "collective_policy": "yield"})
    o, _ = compile_sp(group, {"profile": slow_link, "collective_policy": "overlap"})
    assert y.prediction.step_ms < o.prediction.step_ms
