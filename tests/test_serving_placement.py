"""Memory-aware placement: per-GPU memory, the memory-aware policy against EDF where models do not fit, and
determinism of its runs."""

import pytest

from cfcompile.elastic.serving import Request, SimConfig, generate_workload, simulate, synthetic_costs
from cfcompile.elastic.serving.placement import parse_gpu_memory
from cfcompile.elastic.serving.planned import shipped_costs


def test_parse_gpu_memory():
    assert parse_gpu_memory("80x2,24x3") == (80.0, 80.0, 24.0, 24.0, 24.0)
    assert parse_gpu_memory("48", 3) == (48.0,) * 3 and parse_gpu_memory(141.0, 2) == (141.0, 141.0)
    assert parse_gpu_memory("80x2,24", 3) == (80.0, 80.0, 24.0)
    with pytest.raises(ValueError, match="describes 5 GPUs but the pool has 8"):
        parse_gpu_memory("80x2,24x3", 8)
    for bad in ("80y2", "0x4", "80x0", "-3", ""):
        with pytest.raises(ValueError, match="expected a number of GB for every GPU"):
            parse_gpu_memory(bad, 4)
    with pytest.raises(ValueError, match="without a pool size"):
        parse_gpu_memory("48")


def test_edf_ignores_memory_but_pays_for_it():
    # 1 GPU of 80 GB and 3 of 24 GB; a 512² Qwen-Image request fits only GPU 3. EDF takes low ranks and streams
    # on a 24 GB GPU; memory-aware takes the 80 GB GPU (a load) and runs resident
    costs = shipped_costs("H100")
    req = [Request("s", "qwen-image", 512, 512, slo_scale=2.0)]
    mem = SimConfig(mem_gb=(24.0, 24.0, 24.0, 80.0), preload={})
    edf, aware = (simulate(req, 4, p, costs, mem) for p in ("edf", "memory-aware"))
    dit = lambda res: {r.task.group for r in res.records if r.task.kind == "denoise"}  # noqa: E731
    assert all(0 in g for g in dit(edf)) and edf.summary["streamed_tasks"] > 0
    assert dit(aware) == {(3,)} and aware.summary["streamed_tasks"] == 0 and aware.summary["model_loads"] == 1
    assert aware.finish_s["s"] < edf.finish_s["s"]


@pytest.fixture(scope="module")
def small_pool():
    # Qwen-Image only (the mix with Wan has a handful of requests in minutes: a 720p Wan clip is 20 GPU-minutes)
    costs = shipped_costs("H100")
    return costs, generate_workload("gfdit:qwen-image", gpus=4, minutes=3, load=1.0, seed=3, costs=costs)


@pytest.mark.parametrize("mem", [(24.0,) * 4, (48.0,) * 4, (80.0, 80.0, 24.0, 24.0)])
def test_memory_aware_beats_edf_where_models_do_not_fit(mem, small_pool):
    # Qwen-Image's 58 GB pipeline fits no 48 or 24 GB GPU. Measured (113 requests, SLO attainment, edf / memory-
    # aware): 24 GB 0.000 / 0.310; 48 GB 0.761 / 0.912; 80+24 GB 0.319 / 0.611 (memory-aware without triage 0.000,
    # 0.788, 0.363)
    costs, reqs = small_pool
    config = SimConfig(mem_gb=mem)
    edf, aware, plain = (simulate(reqs, 4, p, costs, config).summary
                         for p in ("edf", "memory-aware", "memory-aware-notriage"))
    assert aware["completed"] == edf["completed"] == len(reqs)
    assert aware["slo_attainment"] >= edf["slo_attainment"] + 0.05, (mem, edf, aware)
    if len(set(mem)) > 1:  # where some GPUs hold the model, knowing which is worth 10 points, and some without triage
        assert aware["slo_attainment"] >= edf["slo_attainment"] + 0.10, (mem, edf, aware)
        assert plain["slo_attainment"] > edf["slo_attainment"], (mem, edf, plain)


def test_memory_aware_is_deterministic_and_keeps_the_invariants(tmp_path, small_pool):
    from test_serving_simulator import _check_invariants

    costs, reqs = small_pool
    config = SimConfig(mem_gb=(80.0, 80.0, 24.0, 24.0), chunk_steps=10)
    dirs = [simulate(reqs, 4, "memory-aware", costs, config).write(tmp_path / str(i)) for i in range(2)]
    for name in ("summary.json", "trace.json"):
        assert (dirs[0] / name).read_bytes() == (dirs[1] / name).read_bytes()
    _check_invariants(simulate(reqs, 4, "memory-aware", costs, config), reqs)
    # the synthetic table prices streaming by a factor: memory-aware runs there too
    syn = generate_workload("gfdit", gpus=4, minutes=2, load=1.0, seed=1)
    _check_invariants(simulate(syn, 4, "memory-aware", synthetic_costs(), SimConfig(mem_gb=(96.0, 48.0) * 2)), syn)


def test_memory_aware_triages_by_what_the_pool_can_do():
    # One 24 GB GPU: Qwen-Image streams (~18.4 s a request at any size). A 512² request (deadline 5.8 s) cannot
    # make it there; a 1024² one (deadline 20.2 s) can if it starts at once. EDF, and triage priced on resident
    # times, run the 512² first (earlier deadline, 2.9 s resident looks feasible) and both miss; memory-aware
    # prices the pool's best group (streamed here), puts the 512² last, and the 1024² one meets its deadline.
    costs = shipped_costs("H100")
    reqs = [Request("s", "qwen-image", 512, 512, slo_scale=2.0), Request("m", "qwen-image", 1024, 1024, slo_scale=2.5)]
    config = SimConfig(mem_gb=24.0)
    met = {}
    for p in ("edf", "edf-triage", "memory-aware"):
        res = simulate(reqs, 1, p, costs, config)
        met[p] = sorted(r.id for r in res.requests if res.finish_s[r.id] <= r.deadline_s)
    assert met == {"edf": [], "edf-triage": [], "memory-aware": ["m"]}


def test_memory_aware_spares_the_gpus_a_model_fits():
    # 80 GB + 24 GB: a 1024² request at t=0 meets its deadline streamed on the 24 GB GPU (18.4 of 20.2 s), a 512²
    # one at t=0.5 only resident on the 80 GB GPU. spare_big leaves the 80 GB GPU to the 512² one. Without sparing
    # (resident GPUs first) the 1024² one takes it; the 512² one then waits for it (next chunk boundary, earlier
    # deadline) instead of streaming on the 24 GB GPU, certain to miss, and both meet theirs too (before
    # serving17 it streamed and missed: {True: [m, s], False: [m]}).
    costs = shipped_costs("H100")
    reqs = [Request("m", "qwen-image", 1024, 1024, slo_scale=2.5),
            Request("s", "qwen-image", 512, 512, slo_scale=2.0, arrival_s=0.5)]
    config = SimConfig(mem_gb=(80.0, 24.0))
    met = {}
    for spare in (True, False):
        res = simulate(reqs, 2, "memory-aware", costs, config, spare_big=spare)
        met[spare] = sorted(r.id for r in res.requests if res.finish_s[r.id] <= r.deadline_s)
    assert met == {True: ["m", "s"], False: ["m", "s"]}


def test_memory_aware_waits_for_gpus_that_hold_the_model():
    # 80 GB + 24 GB, a 1024² request on the 80 GB GPU from t=0, then 512² ones (5.8 s deadlines: 18.4 s streamed on
    # the 24 GB GPU, 2.9 s resident). While they can still make it on the 80 GB GPU they wait for it (it frees at
    # the 1024² one's next chunk boundary and EDF gives it to them) rather than stream on the free 24 GB GPU; before,
    # each took the 24 GB GPU and missed.
    costs = shipped_costs("H100")
    reqs = [Request("m", "qwen-image", 1024, 1024, slo_scale=2.5)]
    reqs += [Request(f"s{i}", "qwen-image", 512, 512, slo_scale=2.0, arrival_s=0.3 + 6.0 * i) for i in range(3)]
    res = simulate(reqs, 2, "memory-aware", costs, SimConfig(mem_gb=(80.0, 24.0)))
    assert sorted(r.id for r in res.requests if res.finish_s[r.id] <= r.deadline_s) == ["m", "s0", "s1", "s2"]
    assert all(rec.task.group == (0,) for rec in res.records if rec.task.request != "m")
