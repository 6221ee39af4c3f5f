import json

import pytest

from cfcompile.cli import main


@pytest.mark.timeout(600)
def test_demo_runs_and_checks_its_output(tmp_path, capsys):
    assert main(["demo", "--steps", "1", "--dump", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "(OK)" in out and "arena on the device" in out and str(tmp_path) in out
    (graph,) = tmp_path.glob("graph_*")  # numbered per process: other tests may have dumped before
    assert (graph / "plan.json").exists() and (graph / "schedule.txt").exists()


def test_full_size_flux_needs_a_gpu(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["demo", "--model", "flux", "--device", "cpu"]) == 2
    assert "needs a GPU" in capsys.readouterr().err


def test_workload_and_simulate_compare_policies(tmp_path, capsys):
    from cfcompile.cli import main

    w = tmp_path / "w.jsonl"
    assert main(["workload", "--mix", "gfdit", "--gpus", "4", "--minutes", "2", "--seed", "1", "--out", str(w)]) == 0
    assert main(["simulate", str(w), "--gpus", "4", "--policy", "static-1", "--policy", "edf-best-fit",
                 "--out", str(tmp_path / "out")]) == 0
    table = capsys.readouterr().out
    assert "static-1" in table and "edf-best-fit" in table and "goodput rps" in table
    for policy in ("static-1", "edf-best-fit"):
        summary = json.loads((tmp_path / "out" / policy / "summary.json").read_text())
        assert summary["gpus"] == 4 and summary["completed"] == summary["requests"]
        assert (tmp_path / "out" / policy / "trace.json").exists()
    assert main(["simulate", str(w), "--policy", "no-such", "--out", str(tmp_path / "x")]) == 2
    assert "unknown policy 'no-such'" in capsys.readouterr().err
