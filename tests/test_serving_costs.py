"""Cost tables: the synthetic Qwen-Image table, JSON round trip, refit, memory-aware placement."""

import json

import pytest

from cfcompile.elastic.serving import CostTable, Request, fit_quadratic, refit, synthetic_costs
from cfcompile.elastic.serving.costs import QWEN_IMAGE_H20
from cfcompile.elastic.serving.placement import Memory


def test_synthetic_table_reproduces_gfdit_numbers():
    qwen = synthetic_costs().model("qwen-image")
    for d, ms in QWEN_IMAGE_H20.items():
        for x, want in zip((1024, 4096, 9216), ms):
            assert qwen.stage_ms("denoise", x, d) == pytest.approx(want)
    small, large = (Request(n, "qwen-image", s, s) for n, s in (("s", 512), ("l", 1536)))
    assert min(qwen.degrees, key=lambda d: qwen.request_ms(small, d)) == 1
    assert min(qwen.degrees, key=lambda d: qwen.request_ms(large, d)) == 4
    assert qwen.stage_ms("vae_decode", 9216, 4) == qwen.stage_ms("vae_decode", 9216, 1)  # single-GPU stage
    assert qwen.stage_ms("denoise", 9216, 8) == qwen.stage_ms("denoise", 9216, 4)  # largest tabulated below
    wan = synthetic_costs().model("wan")
    assert wan.tokens(Request("w", "wan", 720, 1280, 81)) == 45 * 80 * 21


def test_save_load_and_errors(tmp_path):
    table = synthetic_costs()
    assert CostTable.load(table.save(tmp_path / "c.json")) == table
    with pytest.raises(ValueError, match="unknown model 'flux'.*qwen-image"):
        table.model("flux")
    data = table.to_json()
    del data["models"]["wan"]["stages"]["vae_decode"]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"'wan': stages \['vae_decode'\] missing"):
        CostTable.load(tmp_path / "bad.json")
    data = table.to_json()
    data["models"]["wan"]["stages"]["denoise"]["2"] = [1.0, 2.0]
    with pytest.raises(ValueError, match="degree 2: expected \\[a, b, c\\]"):
        CostTable.from_json(data)


def test_refit_recovers_coefficients():
    assert fit_quadratic([1, 2, 3, 4], [1 + 2 * x + 3 * x * x for x in [1, 2, 3, 4]]) == pytest.approx((3, 2, 1))
    assert fit_quadratic([5, 5], [7, 9]) == pytest.approx((0, 0, 8))  # one distinct x: a constant
    rows = [(x, d, 1e-6 * x * x / d + 0.05 * x / d + 20 * d) for d in (1, 2, 8) for x in (1000, 3000, 6000, 9000)]
    new = refit(synthetic_costs(), "qwen-image", rows)
    row = new.model("qwen-image").stages["denoise"]
    assert sorted(row) == [1, 2, 4, 8]  # degree 4 kept, 8 added
    assert row[2] == pytest.approx((0.5e-6, 0.025, 40), rel=1e-6)
    assert row[4] == synthetic_costs().model("qwen-image").stages["denoise"][4]
    with pytest.raises(ValueError, match="row 0"):
        refit(synthetic_costs(), "qwen-image", [(1, 2)])


def test_memory_resident_load_evict_and_stream():
    costs = synthetic_costs()
    mem = Memory([96.0, 96.0, 48.0], costs, load_gbps=20.0, preload={0: ["qwen-image", "wan"], 1: ["wan"]})
    assert mem.resident(0) == ("qwen-image",)  # wan does not fit next to it: 58 + 41 + 20 GB > 96
    assert mem.plan("qwen-image", [0]).load_ms == 0
    prep = mem.apply("qwen-image", [0, 1])
    assert prep.loads == (1,) and prep.load_ms == pytest.approx(58.0 / 20 * 1e3) and not prep.streamed
    assert mem.resident(1) == ("qwen-image",)  # wan evicted
    assert mem.apply("qwen-image", [1, 2]).streamed and mem.resident(2) == ()  # 68 GB do not fit in 48
