"""`cfcompile plan` / `plan_model`: the real models on the meta device, no weights, no GPU."""

import json

import pytest

pytest.importorskip("diffusers")

from cfcompile.cli import main  # noqa: E402
from cfcompile.planning import plan_model  # noqa: E402
from cfcompile.presets import Workload  # noqa: E402


@pytest.mark.timeout(600)
def test_plan_full_size_flux_under_a_budget(tmp_path, capsys):
    assert main(["plan", "--model", "flux", "--height", "1024", "--width", "1024", "--profile", "H100",
                 "--memory-budget", "12GiB", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "single_transformer_blocks.37" in out and "predicted step" in out and "predicted peak memory" in out
    pred = json.loads((tmp_path / "prediction.json").read_text())
    assert pred["peak_bytes"] <= 12 * 2**30
    # 12B bf16 weights, 4096 image tokens: more than half the weights must stream, so the step is copy-bound
    assert pred["resident_bytes"] > 5 * 2**30 and pred["step_ms"] > pred["compute_ms"]
    trace = json.loads((tmp_path / "timeline.json").read_text())
    tracks = {e["args"]["name"] for e in trace["traceEvents"] if e.get("name") == "thread_name"}
    assert {"compute", "h2d"} <= tracks
    assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["memory_budget"] == 12 * 2**30 and plan["summary"]["groups"] >= 57


def test_plan_infeasible_budget_and_bad_workload(capsys):
    assert main(["plan", "--model", "flux", "--tiny", "--height", "128", "--width", "128",
                 "--memory-budget", "1KiB"]) == 2
    assert "raise the budget to at least" in capsys.readouterr().err
    assert main(["plan", "--model", "flux", "--tiny", "--height", "100", "--width", "128"]) == 2
    assert "height" in capsys.readouterr().err


def test_plan_is_deterministic_and_sequence_parallel_adds_collectives():
    w = Workload(height=128, width=128)
    a = plan_model("flux", w, tiny=True, resident_fraction=0.5)
    b = plan_model("flux", w, tiny=True, resident_fraction=0.5)
    assert a.plan.fingerprint() == b.plan.fingerprint() and a.prediction == b.prediction
    sp = plan_model("flux", Workload(height=128, width=128, sp_degree=2), tiny=True, resident_fraction=0.5)
    assert sum(sp.costs.collective_ms) > 0 == sum(a.costs.collective_ms)
    assert sp.costs.total_ms - sum(sp.costs.collective_ms) == pytest.approx(a.costs.total_ms / 2)
    assert len(sp.costs.collectives) == 3 and sp.plan.collective_policy == "overlap"   # H100: NVLink
    assert sum(s.track == "collective" for s in sp.prediction.spans()) == 3
