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
