"""The simulator: determinism, invariants of every run, memory-aware costs, reports, EDF's goodput."""

import json

import pytest

from cfcompile.elastic.serving import Request, SimConfig, generate_workload, simulate, synthetic_costs

POLICIES = ["static-1", "static-2", "fcfs", "srtf", "edf", "preempt"]


@pytest.fixture(scope="module")
def mixed():
    return generate_workload("gfdit", gpus=4, minutes=6, load=1.2, seed=2)


def test_byte_identical_outputs(tmp_path, mixed):
    for policy in ("edf", "preempt"):
        dirs = [simulate(mixed, 4, policy, config=SimConfig(chunk_steps=2)).write(tmp_path / f"{policy}{i}")
                for i in range(2)]
        for name in ("summary.json", "trace.json"):
            assert (dirs[0] / name).read_bytes() == (dirs[1] / name).read_bytes()


@pytest.mark.parametrize("policy", POLICIES)
def test_invariants(policy, mixed):
    _check_invariants(simulate(mixed, 4, policy), mixed)


@pytest.mark.parametrize("gpus", [1, 64])
def test_pool_sizes(gpus):
    reqs = generate_workload("gfdit", gpus=gpus, minutes=2 if gpus > 1 else 20, load=1.0, seed=4)
    for policy in ("edf", "static-1"):
        _check_invariants(simulate(reqs, gpus, policy), reqs)


def _check_invariants(res, mixed):
    ids = [r.id for r in mixed]
    assert sorted(res.finish_s) == sorted(ids) and res.summary["completed"] == len(ids)
    tasks = [r.task.id for r in res.records]
    assert len(tasks) == len(set(tasks))  # every task (and reshard) runs once
    assert sorted(r.task.request for r in res.records if r.task.kind == "vae_decode") == sorted(ids)
    per_gpu = {}
    for rec in res.records:
        for g in rec.task.group:
            per_gpu.setdefault(g, []).append((rec.start_s, rec.end_s, rec.task.id))
    for g, spans in per_gpu.items():  # no GPU runs two things at once
        spans.sort()
        for (s0, e0, a), (s1, e1, b) in zip(spans, spans[1:]):
            assert e0 <= s1 + 1e-9, f"GPU {g}: {a} [{s0}, {e0}) overlaps {b} from {s1}"
    end = {r.task.id: r.end_s for r in res.records}
    arrival = {r.id: r.arrival_s for r in mixed}
    for rec in res.records:  # nothing starts before its inputs (or its request) are there
        assert rec.start_s >= arrival[rec.task.request]
        for dep in rec.task.deps:
            assert rec.start_s >= end[dep] - 1e-9
        if rec.task.kind == "reshard":
            assert set(rec.task.src) & set(rec.task.group)  # a holder of the state sends


def test_summary_and_trace_format(tmp_path, mixed):
    out = simulate(mixed, 4, "edf").write(tmp_path / "run", plot=True)
    s = json.loads((out / "summary.json").read_text())
    assert {"policy", "gpus", "requests", "completed", "slo_attainment", "goodput_rps", "throughput_rps",
            "latency_ms", "per_class", "gpu_busy", "reshards"} <= set(s)
    assert set(s["latency_ms"]) == {"mean", "p50", "p95", "p99"} and set(s["per_class"]) == {"S", "M", "L"}
    assert s["latency_ms"]["p50"] <= s["latency_ms"]["p95"] <= s["latency_ms"]["p99"]
    assert 0 < s["gpu_busy"] <= 1 and s["goodput_rps"] <= s["throughput_rps"]
    trace = json.loads((out / "trace.json").read_text())["traceEvents"]
    names = {e["args"]["name"] for e in trace if e["name"] == "thread_name"}
    assert names == {f"GPU {g}" for g in range(4)}
    cats = {e["cat"] for e in trace if e["ph"] == "X"}
    assert {"text_encode", "prepare", "denoise", "vae_decode", "reshard", "load"} <= cats
    assert all(e["dur"] >= 0 and e["tid"] in range(4) for e in trace if e["ph"] == "X")
    assert (out / "timeline.png").stat().st_size > 0


def test_memory_aware_costs():
    costs = synthetic_costs()
    qwen = Request("q", "qwen-image", 1024, 1024, slo_scale=3.0)
    # a 512² request (fastest on one GPU) goes to a GPU that holds its model under memory-aware: nothing loads;
    # edf ignores residency (low ranks first) and the simulator charges the load
    pool = SimConfig(preload={0: ["wan"], 1: ["wan"], 2: ["qwen-image"], 3: ["qwen-image"]})
    small = [Request("s", "qwen-image", 512, 512, slo_scale=2.0)]
    res = simulate(small, 4, "memory-aware", config=pool)
    assert res.summary["model_loads"] == 0 and {r.task.group for r in res.records} == {(2,)}
    res = simulate(small, 4, "edf", config=pool)
    assert res.summary["model_loads"] == 1 and {r.task.group for r in res.records} == {(0,)}
    assert res.records[0].load_ms == pytest.approx(58 / 20 * 1e3)
    res = simulate([qwen], 4, "edf", config=pool)
    assert res.requests[0].deadline_s == pytest.approx(3.0 * costs.single_gpu_s(qwen))  # slo_scale resolved
    # only wan resident: the qwen request loads its 58 GB first (evicting wan)
    res = simulate([qwen], 1, "edf", config=SimConfig(preload={0: ["wan"]}))
    first = res.records[0]
    assert first.loads == (0,) and first.load_ms == pytest.approx(58 / 20 * 1e3)
    alone = simulate([qwen], 1, "edf").finish_s["q"]
    assert res.finish_s["q"] == pytest.approx(alone + 2.9)
    # 48 GB GPUs cannot hold either model: streamed, slower
    small = simulate([qwen], 1, "edf", config=SimConfig(mem_gb=48.0))
    assert small.summary["streamed_tasks"] > 0 and small.finish_s["q"] > 1.5 * alone


def test_edf_goodput_beats_best_static():
    # Qwen-Image S/M/L (GF-DiT's mix) at load 1.0 on 4 GPUs, goodput summed over five seeds. Measured: EDF
    # best-fit 1.74-2.28x the best static-k (static-1) for seeds 0-19 in blocks of five; a single seed can be as
    # low as 1.09x, so the margin is asserted on the sum
    total = {p: 0.0 for p in ("static-1", "static-2", "static-4", "edf")}
    for seed in range(5):
        reqs = generate_workload("gfdit:qwen-image", gpus=4, minutes=10, load=1.0, seed=seed)
        for p in total:
            total[p] += simulate(reqs, 4, p).summary["goodput_rps"]
    best_static = max(v for p, v in total.items() if p.startswith("static"))
    assert total["edf"] >= 1.2 * best_static, total


class _Home(__import__("cfcompile.elastic.serving", fromlist=["QueuePolicy"]).QueuePolicy):
    """Request ``a`` runs its first two tasks on GPU 0, the rest on GPU 1; ``b`` runs on GPU 0; ``b`` goes first."""

    name = "home"

    def schedule(self, view):
        free, out = set(view.free), []
        for t in sorted(self.ready.values(), key=lambda t: t.request, reverse=True):
            g = 1 if t.request == "a" and t.index >= 2 else 0
            if g in free:
                free.discard(g)
                out.append(t.on((g,)))
        return out


def test_sender_wait_claims_the_group_until_a_holder_frees():
    from cfcompile.elastic.serving import PolicyError

    a = Request("a", "qwen-image", 512, 512, arrival_s=0.0, deadline_s=100.0)
    t2 = next(r.end_s for r in simulate([a], 2, _Home()).records if r.task.id == "a/prepare")
    reqs = [a, Request("b", "qwen-image", 512, 512, arrival_s=t2, deadline_s=100.0)]
    # at t2 b's text encode takes GPU 0, which holds a's state, and a's first chunk is placed on GPU 1
    with pytest.raises(PolicyError, match="all busy; include a free holder or wait"):
        simulate(reqs, 2, _Home())
    res = simulate(reqs, 2, _Home(), config=SimConfig(sender_wait=True))
    _check_invariants(res, reqs)
    rec = {r.task.id: r for r in res.records}
    b_text = rec["b/text_encode"]
    reshard = next(r for r in res.records if r.task.kind == "reshard" and r.task.request == "a")
    assert b_text.start_s == t2 and b_text.task.group == (0,)
    # GPU 1 stays claimed (nothing else runs there) until GPU 0 frees; then GPU 0 sends and a's chunk runs on 1
    assert reshard.start_s == b_text.end_s and set(reshard.task.group) == {0, 1} and 0 in reshard.task.src
    first = min((r for r in res.records if r.task.request == "a" and r.task.kind == "denoise"), key=lambda r: r.start_s)
    assert first.task.group == (1,) and first.start_s == reshard.end_s
    assert not [r for r in res.records if 1 in r.task.group and t2 <= r.start_s < reshard.start_s]
    assert rec["b/prepare"].start_s >= reshard.end_s  # GPU 0 sent the state first
