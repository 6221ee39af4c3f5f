"""Cost tables from plan_model (no GPU): rows and their sources, streaming by bytes, the shipped tables,
calibration from measurements, and what the planned costs make policies do."""

import json

import pytest

from cfcompile.elastic.serving import CostTable, Request, SimConfig, simulate
from cfcompile.elastic.serving.costs import ModelCosts
from cfcompile.elastic.serving.planned import (DEGREES, GPU_MEMORY_GB, PIPELINES, costs_from_model, load_costs,
                                               read_measured, save_table, shipped_costs)

TINY_SHAPES = {"flux": [(256, 256, 1)], "qwen-image": [(256, 256, 1)], "wan": [(128, 128, 5)]}


@pytest.fixture(scope="module")
def tiny():
    # the presets' tiny configs (8 heads, so Ulysses 8 splits them), one shape each: ~1 min on a 2-core CPU, mostly
    # Dynamo tracing the three models once and counting the three real VAEs' decoder FLOPs
    return costs_from_model(tiny=True, shapes=TINY_SHAPES, check_budget_gb=None)


def test_tiny_tables_come_from_plan_model_at_every_degree(tiny, tmp_path):
    from cfcompile.planning import plan_model
    from cfcompile.presets import Workload

    table, notes = tiny
    assert sorted(table.models) == ["flux", "qwen-image", "wan"]
    for name, m in table.models.items():
        assert m.degrees == DEGREES
        assert all(src.startswith("plan_model H100 tiny ") for src in m.sources["denoise"].values()), m.sources
        for stage in ("text_encode", "vae_decode", "prepare"):
            assert list(m.sources[stage]) == [1] and m.sources[stage][1].startswith("estimate: ")
        assert 0 < m.weight_gb - m.dit_gb - 2 * PIPELINES[name].text_params / 1e9 < 0.5  # + the VAE, bf16
        assert m.h2d_gbs == 55.1 and m.load_ms == pytest.approx(m.weight_gb / 55.1 * 1e3)
        assert m.stage_ms("vae_decode", 1e4) > m.stage_ms("vae_decode", 1e3) > 0
    # a row is plan_model's compute time for that degree (the trace is cached, so this is quick)
    h, w, f = TINY_SHAPES["wan"][0]
    for d in (1, 8):
        rep = plan_model("wan", Workload(height=h, width=w, frames=f, sp_degree=d), tiny=True,
                         overrides={"num_attention_heads": 8})
        x = notes["models"]["wan"]["tokens"][0]
        assert table.model("wan").stage_ms("denoise", x, d) == pytest.approx(rep.prediction.compute_ms)
    # sources survive the JSON round trip; notes sit beside the table
    path = save_table(table, notes, tmp_path / "c.json")
    assert CostTable.load(path) == table and json.loads(path.read_text())["notes"]["profile"] == "H100"


def test_unplannable_degree_is_an_estimate_and_says_why():
    table, _ = costs_from_model(("flux",), degrees=(1, 3), tiny=True, shapes={"flux": [(256, 256, 1)]},
                                check_budget_gb=None)
    src = table.model("flux").sources["denoise"]
    assert src[1].startswith("plan_model") and src[3].startswith("estimate: degree-1") and "divides" in src[3]
    with pytest.raises(ValueError, match="including 1"):
        costs_from_model(("flux",), degrees=(2, 4), tiny=True)
    with pytest.raises(ValueError, match="no pipeline facts for 'sd3'"):
        costs_from_model(("sd3",), tiny=True)


@pytest.mark.parametrize("profile", sorted(GPU_MEMORY_GB))
def test_shipped_tables(profile):
    table = shipped_costs(profile)
    assert sorted(table.models) == ["flux", "qwen-image", "wan"]
    for m in table.models.values():
        assert m.degrees == DEGREES and m.h2d_gbs > 0 and m.dit_gb > 20
        assert all(s.startswith(f"plan_model {profile} ") for s in m.sources["denoise"].values())
    qwen = table.model("qwen-image")
    small, large = (Request(n, "qwen-image", s, s) for n, s in (("s", 512), ("l", 1536)))
    assert min(DEGREES, key=lambda d: qwen.request_ms(large, d)) > 1  # wide for the large image
    assert qwen.request_ms(small, 8) > qwen.request_ms(small, 1) / 8  # the small one gains little from width
    with pytest.raises(ValueError, match="no shipped cost table for profile 'A100'.*cfcompile costs"):
        shipped_costs("A100")


def test_streaming_is_priced_by_bytes():
    m = ModelCosts("m", {"text_encode": {1: (0, 0, 10.0)}, "prepare": {1: (0, 0, 0)}, "denoise": {1: (0, 0.1, 0),
                                                                                                   4: (0, 0.025, 5)},
                         "vae_decode": {1: (0, 0, 20.0)}},
                   weight_gb=50.0, dit_gb=40.0, activation_gb=4.0, stream_reserve_gb=1.0, h2d_gbs=50.0)
    # 24 GB: 19 GB resident, 21 GB stream per step = 420 ms, more than 100 ms of compute
    assert m.streamed_step_ms(100.0, 24.0) == pytest.approx(21 / 50 * 1e3)
    assert m.streamed_step_ms(900.0, 24.0) == 900.0  # compute hides the copies
    assert m.streamed_step_ms(100.0, 80.0) == 100.0
    r = Request("r", "m", 512, 512, steps=10)  # 1024 tokens: 102.4 ms a step on one GPU, 30.6 on four
    one, four = m.request_ms(r, 1, streamed=True, mem_gb=24.0), m.request_ms(r, 4, streamed=True, mem_gb=24.0)
    assert four == pytest.approx(one) and one == pytest.approx(10 * 420 + 10 + 10 / 50 * 1e3 + 20)  # SP cannot help


def test_measured_rows_calibrate_or_replace(tmp_path):
    base = shipped_costs("H100")
    x = 4096
    pred = base.model("qwen-image").stage_ms("denoise", x, 2)
    csv = tmp_path / "m.csv"
    csv.write_text(f"# two runs\nmodel,stage,tokens,degree,ms\nqwen-image,denoise,{x},2,{1.2 * pred}\n")
    cal = load_costs("H100", measured=csv)
    q = cal.model("qwen-image")
    assert q.stage_ms("denoise", x, 2) == pytest.approx(1.2 * pred)
    assert q.stage_ms("denoise", 9216, 8) == pytest.approx(1.2 * base.model("qwen-image").stage_ms("denoise", 9216, 8))
    assert "x 1.200 (measured m.csv, 1 rows)" in q.sources["denoise"][8]
    rep = load_costs("H100", measured=csv, mode="replace").model("qwen-image")
    assert rep.stage_ms("denoise", x, 2) == pytest.approx(1.2 * pred) and rep.sources["denoise"][2] == \
        "measured m.csv (1 rows)"
    assert rep.stage_ms("denoise", x, 4) == base.model("qwen-image").stage_ms("denoise", x, 4)
    csv.write_text("model,stage,tokens,ms\nqwen-image,denoise,1,2\n")
    with pytest.raises(ValueError, match=r"lacks \['degree'\]"):
        read_measured(csv)
    csv.write_text("model,stage,tokens,degree,ms\nqwen-image,denoise,4096,two,1\n")
    with pytest.raises(ValueError, match="m.csv:2: tokens, degree and ms must be numbers"):
        read_measured(csv)


def test_planned_costs_small_gets_one_gpu_large_urgent_gets_several():
    from cfcompile.elastic.serving import build_tasks
    from cfcompile.elastic.serving.policies import best_fit

    costs = shipped_costs("H100")
    small = Request("small", "qwen-image", 512, 512, arrival_s=0.0, deadline_s=10.0)  # 3.0 s on one GPU
    large = Request("large", "wan", 720, 1280, 81, cfg=True, arrival_s=0.0, deadline_s=300.0)  # 1180 s on one

    class View:  # best-fit reads the request, its degrees and remaining times
        now = 0.0

        def request(self, rid):
            return {"small": small, "large": large}[rid]

        def degrees(self, model):
            return costs.model(model).degrees

        def remaining_s(self, rid, d):
            r = self.request(rid)
            return costs.model(r.model).request_ms(r, d) / 1e3

    first = {r.id: next(t for t in build_tasks(r) if t.kind == "denoise") for r in (small, large)}
    assert best_fit(first["small"], 8, View()) == 1 and best_fit(first["large"], 8, View()) in (4, 8)
    # on a busy pool (an SP-8 Wan clip holds half of it) both policies place them that way
    busy = Request("busy", "wan", 720, 1280, 81, cfg=True, arrival_s=0.0, deadline_s=1e6)
    for policy in ("edf", "memory-aware"):
        res = simulate([busy, small, large], 9, policy, costs, SimConfig(mem_gb=80.0, chunk_steps=50))
        widths = {rid: [len(r.task.group) for r in res.records if r.task.request == rid and r.task.kind == "denoise"]
                  for rid in ("small", "large")}
        assert widths["small"][0] == 1 and widths["large"][0] >= 4, (policy, widths)
