"""cfcompile.elastic's collectives inside torch.compile: custom ops with fake implementations, no graph break,
recognised by the cost model as collectives, and the chunkflow backend's yield policy around them (2 gloo ranks)."""

import json
import re

import pytest
import torch

from dist_harness import run_distributed  # tests/ is on sys.path (rootdir conftest)

OPS = ("cfcompile_elastic.all_to_all_single.default", "cfcompile_elastic.all_gather.default")


def _fn(group, unequal):
    from cfcompile.elastic import all_gather, all_to_all

    me = group.rank_in_group(torch.distributed.get_rank())
    # unequal: member 0 keeps 1 row and sends 3, member 1 sends 3 and keeps 1 (all_gather needs equal shapes)
    splits = [[1, 3], [3, 1]]
    kw = dict(input_split_sizes=splits[me], output_split_sizes=[splits[j][me] for j in range(2)]) if unequal else {}

    def fn(x):
        y = all_to_all(torch.sin(x) * 2, group, **kw)
        return all_gather(y + 1, group, dim=1).cos()
    return fn


def _compile_worker(rank, world):
    from torch._dynamo.utils import counters
    from torch.library import opcheck

    from cfcompile.costmodel.graph_costs import estimate_costs
    from cfcompile.costmodel.profiles import resolve_profile
    from cfcompile.elastic import form_group
    from cfcompile.elastic.collectives import all_gather_op, all_to_all_single_op

    group = form_group((0, 1))
    x = torch.arange(12.0).reshape(4, 3) + 10 * rank
    out = {}
    for unequal in (False, True):
        fn = _fn(group, unequal)
        eager = fn(x)
        graphs = []

        def capture(gm, example_inputs):
            graphs.append((gm, example_inputs))
            return gm.forward

        torch._dynamo.reset()
        counters.clear()
        results = {b: torch.compile(fn, backend=b, fullgraph=True)(x) for b in (capture, "eager", "aot_eager")}
        gm, example_inputs = graphs[0]
        costs = estimate_costs(gm, example_inputs, resolve_profile("cpu", torch.device("cpu")))
        out[unequal] = dict(
            eager=eager, compiled=[results[b] for b in ("eager", "aot_eager")],
            graph_breaks=dict(counters["graph_break"]), frames=counters["stats"]["unique_graphs"],
            ops=[str(n.target) for n in gm.graph.nodes if str(n.target) in OPS],
            collectives=[(c.kind, c.launch, c.wait, c.bytes, c.group_size, c.ms > 0) for c in costs.collectives],
            launch_nodes=[str(list(gm.graph.nodes)[c.launch].target) for c in costs.collectives],
            node_ms=[costs.collective_ms[c.wait] for c in costs.collectives])
    # honest schemas and fake implementations (every rank runs the same checks: the exchanges pair up)
    opcheck(all_to_all_single_op, (x, [0, 1], [2, 2], [2, 2]))
    opcheck(all_gather_op, (x, [0, 1]))
    opcheck(all_to_all_single_op, (x, [rank], [4], [4]))   # a group of one: a copy
    # the autograd formula: the gradient of an all-to-all is the all-to-all back
    # rank 0 keeps 1 row and sends 3, rank 1 sends 3 and keeps 1 (so each receives as it sends)
    xr = x.clone().requires_grad_()
    splits = [3, 1] if rank else [1, 3]
    (all_to_all_single_op(xr, [0, 1], splits, splits) * torch.arange(4.0)[:, None]).sum().backward()
    out["grad"] = xr.grad
    return out


@pytest.mark.timeout(240)
def test_collectives_compile_without_graph_breaks_and_are_costed():
    res = run_distributed(_compile_worker, 2, timeout=200)
    for rank, r in enumerate(res):
        for unequal in (False, True):
            c = r[unequal]
            for compiled in c["compiled"]:
                torch.testing.assert_close(compiled, c["eager"], rtol=0, atol=0)
            assert c["graph_breaks"] == {} and c["frames"] == 3, c  # one whole-function graph per backend
            assert c["ops"] == list(OPS), c["ops"]
            # one Collective per op: launch == wait (synchronous), bytes sent, group size = len(ranks)
            a2a, gather = c["collectives"]
            assert a2a[:2] == ("all_to_all_single", a2a[2]) and a2a[1] == a2a[2] and a2a[3:] == (4 * 3 * 4, 2, True)
            assert gather[0] == "all_gather_into_tensor" and gather[1] == gather[2] and gather[4:] == (2, True)
            assert c["launch_nodes"] == list(OPS)
            assert all(ms > 0 for ms in c["node_ms"])
        assert r[True]["eager"].shape == r[False]["eager"].shape == (4, 6)
    # each input row's gradient is the index of the output row it landed in: rank 0's row 0 stays (row 0), rows 1-3
    # become rank 1's rows 0-2; rank 1's rows 0-2 become rank 0's rows 1-3, its row 3 stays
    torch.testing.assert_close(res[0]["grad"], torch.tensor([0.0, 0, 1, 2])[:, None].expand(4, 3))
    torch.testing.assert_close(res[1]["grad"], torch.tensor([1.0, 2, 3, 3])[:, None].expand(4, 3))


def _chunkflow_worker(rank, world, profile_path):
    from torch._inductor.utils import run_and_get_code

    import cfcompile
    from cfcompile.backend import compiled_graphs
    from cfcompile.elastic import form_group
    from cfcompile.passes.rewrite import clobbers
    from cfcompile.passes.verify import check_generated_order
    from toy import sp_toy

    torch._dynamo.reset()
    model, x = sp_toy(form_group((0, 1)), blocks=1)  # one block: Inductor on the CPU compiles it in ~20 s
    x = x + rank  # each rank its own sequence shard
    with torch.no_grad():
        eager = model(x)
        cfcompile.offload(model, "cpu")
        fn = torch.compile(model, backend="chunkflow", options={
            "chunk_size": 4096, "wrap_around": False, "profile": profile_path, "collective_policy": "yield"})
        out, codes = run_and_get_code(fn, x)
        again = fn(x)
    g = compiled_graphs()[-1]
    plan, costs = g.chunkflow_plan, g.chunkflow_costs
    lines = [line.strip() for line in codes[0][codes[0].index("def call(self, args):"):].splitlines()]
    a2a_lines = [i for i, line in enumerate(lines) if "torch.ops.cfcompile_elastic.all_to_all_single.default(" in line]

    def next_op(i):  # the next line after ``i`` that runs something (not an alias, del, comment or assert)
        return next(line for line in lines[i + 1:] if not line.startswith(("assert_", "del ", "#"))
                    and not re.fullmatch(r"buf\d+ = buf\d+", line))
    return dict(
        eager=eager, out=out, again=again, policy=plan.collective_policy, fingerprint=plan.fingerprint(),
        collectives={(c.kind, c.group_size, c.launch == c.wait) for c in costs.collectives},
        n_collectives=len(costs.collectives), segments=sum(len(s.segments) for s in plan.streamed),
        a2a_lines=a2a_lines,
        # a moved part is issued right after its collective (the op is its own wait)
        prefetch_after_a2a=sum(next_op(i).startswith("torch.ops.cfcompile.prefetch_") for i in a2a_lines),
        order_errors=check_generated_order(codes[0], list(g.chunkflow_layout.slots), clobbers(plan)))


@pytest.mark.timeout(300)
def test_chunkflow_yield_around_logical_group_all_to_all(tmp_path):
    # Copies and all-to-alls of comparable length (as in test_collectives), so copies would run into the windows.
    profile = tmp_path / "pcie.json"
    profile.write_text(json.dumps(dict(name="pcie", matmul_tflops=0.01, memory_gbs=5.0, h2d_gbs=0.05,
                                       h2d_latency_us=0, kernel_overhead_us=0, link_gbs=0.002, link_shares_h2d=True)))
    env = {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor_cache"), "TORCHINDUCTOR_COMPILE_THREADS": "1"}
    res = run_distributed(_chunkflow_worker, 2, args=(str(profile),), timeout=280, env=env)
    for r in res:
        torch.testing.assert_close(r["out"], r["eager"])
        torch.testing.assert_close(r["again"], r["eager"])
        assert r["policy"] == "yield" and r["n_collectives"] == 4, r
        assert r["collectives"] == {("all_to_all_single", 2, True)}
        assert len(r["a2a_lines"]) == 4 and r["order_errors"] == [], r
        assert r["segments"] > 0 and r["prefetch_after_a2a"] > 0, "some copies should have moved behind an all-to-all"
    assert res[0]["fingerprint"] == res[1]["fingerprint"]
