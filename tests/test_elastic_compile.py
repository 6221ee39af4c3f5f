"""cfcompile.elastic's collectives inside torch.compile: custom ops with fake implementations, no graph break,
recognised by the cost model as collectives, a ranks tensor as a run-time value (no recompile for another group of
the same size, clear errors for bad ranks), and the chunkflow backend's yield policy around them (2 gloo ranks)."""

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
    pair = torch.tensor([0, 1])
    opcheck(all_to_all_single_op, (x, pair, [2, 2], [2, 2]))
    opcheck(all_gather_op, (x, pair))
    opcheck(all_to_all_single_op, (x, torch.tensor([rank]), [4], [4]))   # a group of one: a copy
    # the autograd formula: the gradient of an all-to-all is the all-to-all back
    # rank 0 keeps 1 row and sends 3, rank 1 sends 3 and keeps 1 (so each receives as it sends)
    xr = x.clone().requires_grad_()
    splits = [3, 1] if rank else [1, 3]
    (all_to_all_single_op(xr, pair, splits, splits) * torch.arange(4.0)[:, None]).sum().backward()
    out["grad"] = xr.grad
    # the same under compile (AOTAutograd traces the backward; the ranks tensor is saved for it)
    xr = x.clone().requires_grad_()
    f = torch.compile(lambda t, r: (all_to_all_single_op(t, r, splits, splits) * torch.arange(4.0)[:, None]).sum(),
                      backend="aot_eager", fullgraph=True)
    f(xr, pair).backward()
    out["compiled_grad"] = xr.grad
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
    for key in ("grad", "compiled_grad"):
        torch.testing.assert_close(res[0][key], torch.tensor([0.0, 0, 1, 2])[:, None].expand(4, 3))
        torch.testing.assert_close(res[1][key], torch.tensor([1.0, 2, 3, 3])[:, None].expand(4, 3))


def _runtime_ranks_worker(rank, world):
    from torch._dynamo.utils import counters

    from cfcompile.elastic import all_gather, all_to_all, form_group

    def fn(x, group):
        return all_gather(all_to_all(x * 2, group) + 1, group, dim=1)

    x = torch.arange(8.0).reshape(4, 2) + 10 * rank
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    ranks = torch.tensor([0, 1])
    out = {"01": compiled(x, ranks), "eager_01": fn(x, form_group((0, 1)))}
    ranks.copy_(torch.tensor([1, 0]))   # refilled in place, as ulysses does: the other order, the same graph
    out["10"] = compiled(x, ranks)
    out["10_new_tensor"] = compiled(x, torch.tensor([1, 0]))
    out["eager_10"] = fn(x, form_group((1, 0)))
    out["frames_one_size"] = counters["stats"]["unique_graphs"]
    out["alone"] = compiled(x, torch.tensor([rank]))      # another size: another graph
    out["eager_alone"] = fn(x, form_group((rank,)))
    out["frames"] = counters["stats"]["unique_graphs"]
    out["graph_breaks"] = dict(counters["graph_break"])
    # bad ranks fail on every rank before any exchange, so the ranks stay in step
    bad = {"dtype": torch.tensor([0, 1], dtype=torch.int32), "device": torch.tensor([0, 1], device="meta"),
           "shape": torch.tensor([[0, 1]]), "duplicate": torch.tensor([rank, rank]),
           "not a member": torch.tensor([1 - rank]), "world": torch.tensor([rank, 5])}
    errors = {}
    for name, r in bad.items():
        for mode, f in (("eager", fn), ("compiled", compiled)):
            try:
                f(x, r)
                errors[name, mode] = None
            except Exception as e:  # noqa: BLE001 - the message is checked
                errors[name, mode] = f"{type(e).__name__}: {e}"
    out["errors"] = errors
    out["after_errors"] = compiled(x, torch.tensor([0, 1]))
    return out


@pytest.mark.timeout(240)
def test_ranks_are_a_runtime_value():
    res = run_distributed(_runtime_ranks_worker, 2, timeout=200)
    for r in res:
        for key in ("01", "10", "10_new_tensor", "alone", "after_errors"):
            ref = r["eager_" + {"10_new_tensor": "10", "after_errors": "01"}.get(key, key)]
            torch.testing.assert_close(r[key], ref, rtol=0, atol=0, msg=lambda m: f"{key}: {m}")
        assert not torch.equal(r["01"], r["10"])  # the group's order reached the compiled graph
        frames = (r["frames_one_size"], r["frames"], r["graph_breaks"])
        assert frames == (1, 2, {}), frames
        e = r["errors"]
        for mode in ("eager", "compiled"):
            assert "ranks must be a non-empty 1-D int64 CPU tensor" in e["dtype", mode] and "torch.int32" in \
                e["dtype", mode], e
            assert "ranks must be a non-empty 1-D int64 CPU tensor" in e["device", mode] and "on meta" in \
                e["device", mode], e
            assert "ranks must be a non-empty 1-D int64 CPU tensor" in e["shape", mode], e
            assert "ranks must be distinct" in e["duplicate", mode], e
            assert "is not in ranks" in e["not a member", mode], e
            assert "ranks [5] are not in the world of 2 ranks" in e["world", mode], e


def _chunkflow_worker(rank, world, profile_path):
    from torch._inductor.utils import run_and_get_code

    import cfcompile
    from cfcompile.compiler.backend import compiled_graphs
    from cfcompile.elastic import form_group
    from cfcompile.compiler.rewrite import clobbers
    from cfcompile.compiler.verify import check_generated_order
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
    plan, costs = g.plan, g.costs
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
        order_errors=check_generated_order(codes[0], list(g.layout.slots), clobbers(plan)))


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
