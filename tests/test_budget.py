"""One MemoryBudget for several models (hardening): resident chunks of all its graphs add up, the streaming arena
and the activations count once (the largest), every graph is planned within what the others leave, a graph that
does not fit takes resident chunks back from the least recently called ones, and wrong uses are refused with
nothing changed. Plain int budgets stay per graph."""

import gc
import json

import pytest
import torch

import cfcompile
from cfcompile import MemoryBudget
from cfcompile.compiler.backend import compiled_graphs, release_graphs
from cfcompile.offload import store_of
from cfcompile.plan.search import BUDGET_HEADROOM, BudgetError
from cfcompile.runtime.arena import ARENAS, RESIDENTS
from toy import toy


@pytest.fixture
def slow_copies(tmp_path):
    """A profile where no copy hides behind compute: every graph wants as much resident as its budget allows."""
    path = tmp_path / "slow_copies.json"
    path.write_text(json.dumps(dict(name="slow-copies", matmul_tflops=100.0, memory_gbs=1000.0, h2d_gbs=0.001,
                                    h2d_latency_us=0.0, kernel_overhead_us=0.0)))
    return str(path)


def two_models():
    small, x = toy(d=64, blocks=4)        # 788 KiB of weights
    big, _ = toy(d=96, blocks=3)          # 1.29 MiB
    with torch.no_grad():
        refs = small(x), big(x)
    cfcompile.offload(small, "cpu")
    cfcompile.offload(big, "cpu")
    return small, big, x, refs


def under_one_budget(size: str, profile: str):
    """Both toy models compiled under one ``MemoryBudget(size)``: small, big, x, refs, budget, opts, f_small, f_big."""
    small, big, x, refs = two_models()
    budget = MemoryBudget(size)
    opts = {"chunk_size": 4096, "memory_budget": budget, "profile": profile}
    return (small, big, x, refs, budget, opts, torch.compile(small, backend="chunkflow", options=opts),
            torch.compile(big, backend="chunkflow", options=opts))


def inner(e: BaseException) -> BaseException:
    return getattr(e, "inner_exception", None) or e.__cause__ or e


def fits(budget: MemoryBudget) -> bool:
    return budget.usage()["peak_bytes"] <= budget.bytes * (1 - BUDGET_HEADROOM)


def test_two_models_under_one_budget_add_residents_once_each_and_share_arena_and_activations(slow_copies):
    gc.collect()
    assert RESIDENTS.bytes() == ARENAS.bytes() == 0
    small, big, x, refs, budget, opts, f_small, f_big = under_one_budget("2MiB", slow_copies)
    with torch.no_grad():
        torch.testing.assert_close(f_small(x), refs[0])
        g_small = compiled_graphs()[-1]
        torch.testing.assert_close(f_big(x), refs[1])
        g_big = compiled_graphs()[-1]
        for _ in range(2):
            torch.testing.assert_close(f_small(x), refs[0])
            torch.testing.assert_close(f_big(x), refs[1])
    p_small, p_big = g_small.plan, g_big.plan
    u = budget.usage()
    assert u["graphs"] == 2 and not g_small.runtime.stale
    # residents add up (each model's once), the arena is the larger one, the activations the larger ones
    assert u["resident_bytes"] == RESIDENTS.bytes() == p_small.total_resident_bytes + p_big.total_resident_bytes
    assert u["arena_bytes"] == ARENAS.bytes() == max(p_small.total_arena_bytes, p_big.total_arena_bytes)
    acts = [g.prediction.activation_bytes for g in (g_small, g_big)]
    assert u["activation_bytes"] == max(acts) and acts[0] != acts[1]
    assert u["peak_bytes"] == u["resident_bytes"] + u["arena_bytes"] + u["activation_bytes"]
    assert fits(budget)
    # the budget bit: the second model streams, within what the first left; its prediction counts all of it
    assert p_big.streamed_bytes > 0 and p_small.total_resident_bytes > 0
    pred = g_big.prediction
    assert pred.resident_bytes == u["resident_bytes"] and pred.arena_bytes == u["arena_bytes"]
    assert pred.peak_bytes == u["peak_bytes"]
    # a plain budget of the same size is per graph: the big model alone keeps more resident than under the shared one
    alone = torch.compile(big, backend="chunkflow", options={**opts, "memory_budget": budget.bytes})
    with pytest.raises(Exception, match="same MemoryBudget object"), torch.no_grad():
        alone(x)                                    # ... but not next to graphs of it under the shared budget
    del f_small, f_big, g_small, g_big, alone
    torch._dynamo.reset()
    gc.collect()
    assert RESIDENTS.bytes() == ARENAS.bytes() == 0 and budget.usage()["graphs"] == 0
    alone = torch.compile(big, backend="chunkflow", options={**opts, "memory_budget": budget.bytes})
    with torch.no_grad():
        torch.testing.assert_close(alone(x), refs[1])
    assert compiled_graphs()[-1].plan.total_resident_bytes > p_big.total_resident_bytes


def test_plain_budgets_stay_per_graph(slow_copies):
    small, big, x, refs = two_models()
    opts = {"chunk_size": 4096, "memory_budget": "1.2MiB", "profile": slow_copies}
    f_small, f_big = (torch.compile(m, backend="chunkflow", options=opts) for m in (small, big))
    with torch.no_grad():
        torch.testing.assert_close(f_small(x), refs[0])
        torch.testing.assert_close(f_big(x), refs[1])
    g_small, g_big = compiled_graphs()[-2:]
    # each graph fills its own budget: together they hold more than one budget, and nothing was taken back
    assert not g_small.runtime.stale
    assert all(g.prediction.peak_bytes <= 1.2 * 2**20 * (1 - BUDGET_HEADROOM) for g in (g_small, g_big))
    assert RESIDENTS.bytes() + ARENAS.bytes() > 1.2 * 2**20
    # the big model's plan is the one it gets alone: another model's graphs change nothing
    assert g_big.prediction.resident_bytes == g_big.plan.total_resident_bytes
    fingerprint = g_big.plan.fingerprint()
    del f_small, f_big, g_small, g_big
    torch._dynamo.reset()
    gc.collect()
    with torch.no_grad():
        torch.compile(big, backend="chunkflow", options=opts)(x)
    assert compiled_graphs()[-1].plan.fingerprint() == fingerprint


def test_a_graph_that_does_not_fit_takes_resident_chunks_back_and_the_other_replans_once(slow_copies):
    gc.collect()
    small, big, x, refs, budget, opts, f_small, f_big = under_one_budget("1.2MiB", slow_copies)
    with torch.no_grad():
        torch.testing.assert_close(f_small(x), refs[0])
        g_small = compiled_graphs()[-1]
        first = g_small.plan
        assert first.total_resident_bytes > budget.bytes / 2 and fits(budget)   # the first graph took the room
        torch.testing.assert_close(f_big(x), refs[1])
        g_big = compiled_graphs()[-1]
        # the small model's chunks were taken back: freed, its graph waits to be planned again
        assert g_small.runtime.stale and not g_small.runtime.residents
        assert RESIDENTS.bytes() == g_big.plan.total_resident_bytes > 0
        assert fits(budget)
        torch.testing.assert_close(f_small(x), refs[0])   # planned again within what is left, and recompiled
        again = g_small.plan
        assert again is not first and not g_small.runtime.stale
        assert again.total_resident_bytes < first.total_resident_bytes
        assert fits(budget) and budget.usage()["resident_bytes"] == RESIDENTS.bytes()
        # stable from here: nobody takes anything back any more
        plans = g_small.plan, g_big.plan
        for _ in range(2):
            torch.testing.assert_close(f_big(x), refs[1])
            torch.testing.assert_close(f_small(x), refs[0])
        assert (g_small.plan, g_big.plan) == plans


def test_an_infeasible_shared_budget_names_the_minimum_and_changes_nothing(slow_copies):
    gc.collect()
    small, big, x, refs, budget, opts, f_small, f_big = under_one_budget("600KiB", slow_copies)
    with torch.no_grad():
        torch.testing.assert_close(f_small(x), refs[0])
        g_small = compiled_graphs()[-1]
        gc.collect()   # planning collects: count only what is alive
        held, arena, n = RESIDENTS.bytes(), ARENAS.bytes(), len(compiled_graphs())
        with pytest.raises(Exception) as e:
            f_big(x)
    err = inner(e.value)
    assert isinstance(err, BudgetError) and err.minimum_bytes > budget.bytes
    assert "MemoryBudget('600.00 KiB') is shared with 1 other graph(s) on cpu" in str(err)
    assert "raise the budget to at least" in str(err)
    # nothing taken back, allocated or registered
    assert not g_small.runtime.stale and budget.usage()["graphs"] == 1
    assert (RESIDENTS.bytes(), ARENAS.bytes(), len(compiled_graphs())) == (held, arena, n)
    # the minimum it names works, in the same order, with the first model taking all it can first
    minimum = err.minimum_bytes
    del f_small, f_big, g_small, e, err    # the traceback holds Dynamo's cache entries, with the first graph
    torch._dynamo.reset()
    gc.collect()
    enough = MemoryBudget(minimum)
    opts["memory_budget"] = enough
    f_small = torch.compile(small, backend="chunkflow", options=opts)
    f_big = torch.compile(big, backend="chunkflow", options=opts)
    with torch.no_grad():
        for _ in range(2):
            torch.testing.assert_close(f_small(x), refs[0])
            torch.testing.assert_close(f_big(x), refs[1])
            assert fits(enough)


def test_wrong_uses_are_refused_with_nothing_changed():
    m, x = toy()
    cfcompile.offload(m, "cpu")
    with pytest.raises(ValueError, match="MemoryBudget: must be positive"):
        MemoryBudget(0)
    with pytest.raises(ValueError, match="MemoryBudget: cannot parse 'lots'"):
        MemoryBudget("lots")
    with pytest.raises(ValueError, match="not another MemoryBudget"):
        MemoryBudget(MemoryBudget("1GiB"))
    with pytest.raises(ValueError, match="memory_budget: expected a number of bytes, a string like '12GiB', 'auto', "
                                         "or a cfcompile.MemoryBudget"):
        cfcompile.compile(m, memory_budget=[2**30])
    with pytest.raises(ValueError, match="resident_fraction and memory_budget cannot be used together"):
        cfcompile.compile(m, memory_budget=MemoryBudget("1GiB"), resident_fraction=0.5)
    assert repr(MemoryBudget("1.5GiB")) == "MemoryBudget('1.50 GiB')" and MemoryBudget("auto").bytes is None
    with pytest.raises(Exception, match=r"MemoryBudget\('auto'\) needs the free device memory"), torch.no_grad():
        cfcompile.compile(m, chunk_size=4096, memory_budget=MemoryBudget("auto"))(x)
    # the same weights under a plain budget and a shared one would count one resident copy in two budgets
    plain = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "memory_budget": "64MiB"})
    with torch.no_grad():
        plain(x)
    gc.collect()   # planning collects: count only what is alive
    n, held = len(compiled_graphs()), RESIDENTS.bytes()
    shared = MemoryBudget("64MiB")
    f = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "memory_budget": shared},
                      dynamic=False)
    with pytest.raises(Exception, match=r"also read by a graph compiled with memory_budget='64.00 MiB' \(one "
                                        r"model's graphs\), and this one has MemoryBudget\('64.00 MiB'\)"), \
            torch.no_grad():
        f(x)
    assert len(compiled_graphs()) == n and RESIDENTS.bytes() == held and shared.usage()["graphs"] == 0


def test_a_graph_planned_again_into_the_same_placement_keeps_its_compiled_code(slow_copies, monkeypatch):
    """Take-backs are routine in a pipeline under one budget (the VAE, compiled last, takes room from the
    transformer): when the re-plan places every chunk as before, the graph keeps its code (no second Inductor run:
    30 s for FLUX.1's blocks) and still equals eager."""
    from cfcompile.compiler.backend import _Compiled

    gc.collect()
    small, big, x, refs, budget, opts, f_small, f_big = under_one_budget("1.2MiB", slow_copies)
    compiles = []
    real = _Compiled._compile
    monkeypatch.setattr(_Compiled, "_compile", lambda *a, **k: compiles.append(1) or real(*a, **k))
    with torch.no_grad():
        torch.testing.assert_close(f_small(x), refs[0])
        g_small = compiled_graphs()[-1]
        first = g_small.plan
        torch.testing.assert_close(f_big(x), refs[1])
        assert g_small.runtime.stale and len(compiles) == 2
        # the big model's graphs go (its memory is given back): the small one is re-planned with the room it had
        release_graphs(reading=store_of(big).groups)
        torch.testing.assert_close(f_small(x), refs[0])
        assert not g_small.runtime.stale and g_small.plan.code_key() == first.code_key()
        assert len(compiles) == 2 and g_small.compiles_saved == 1 and g_small.compiles == 1
        torch.testing.assert_close(f_small(x), refs[0])
