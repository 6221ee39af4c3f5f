import json

import pytest

from cfcompile.cli import main


@pytest.mark.timeout(600)
def test_demo_runs_and_checks_its_output(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default --out is ./cfcompile-demo, not a temporary folder
    assert main(["demo", "--model", "tiny", "--steps", "1"]) == 0   # the default (small) runs in CI as is
    out = capsys.readouterr().out
    assert "(OK)" in out and "arena on the device" in out
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("output vs. Inductor"))
    assert lines[first - 2].split() == ["measure", "value"] and set(lines[first - 1]) == {"-", " "}  # header
    (graph,) = (tmp_path / "cfcompile-demo").glob("graph_*")  # numbered per process: others may have dumped
    assert (graph / "plan.json").exists() and (graph / "schedule.txt").exists()
    assert out.rstrip().splitlines()[-1].endswith(str(graph))  # says where its files are


def test_full_size_flux_needs_a_gpu(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["demo", "--model", "flux", "--device", "cpu"]) == 2
    assert "needs a GPU" in capsys.readouterr().err


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out and "demo | plan" not in out
    for command, says in (("demo", "offload and compile"), ("plan", "plan a preset model"),
                          ("workload", "generate a serving workload"), ("simulate", "simulate serving"),
                          ("generate", "generate an image or video")):
        line = next((line for line in out.splitlines() if line.split()[:1] == [command]), "")
        assert says in line, f"--help has no line describing {command}:\n{out}"


@pytest.mark.parametrize("argv", [["plan", "--model", "flux", "--bogus"], ["plan", "--bogus"],
                                  ["demo", "--bogus", "1"]])
def test_option_errors_show_the_commands_usage(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"usage: cfcompile {argv[0]} " in err and f"cfcompile {argv[0]}: error:" in err
    assert "unrecognized arguments: --bogus" in err or "required: --model" in err


@pytest.mark.parametrize("device", ["cuda", "cuda:7", "gpu", "mps"])
def test_demo_on_a_missing_device_says_so_in_one_line(device, capsys):
    import torch

    if torch.cuda.is_available() and device.startswith("cuda"):
        pytest.skip("this machine has a GPU")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    assert main(["demo", "--device", device]) == 2  # before any model is built
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"cfcompile demo: --device {device!r}" if device == "gpu" else
                          f"cfcompile demo: --device {device} is not available")
    assert "--device cpu" in err or "use cuda, cuda:N or cpu" in err


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


def test_demo_out_that_cannot_be_written(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["demo", "--device", "cpu", "--out", str(tmp_path / "file" / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cfcompile demo: cannot write to --out") and err.count("\n") == 1


def test_simulate_with_a_profile_and_mixed_gpu_memory(tmp_path, capsys):
    from cfcompile.cli import main

    w = tmp_path / "w.jsonl"
    assert main(["workload", "--mix", "gfdit:qwen-image", "--gpus", "4", "--minutes", "1", "--profile", "H100",
                 "--out", str(w)]) == 0
    out = tmp_path / "out"
    assert main(["simulate", str(w), "--profile", "H100", "--gpu-memory", "80x2,24x2", "--policy", "edf",
                 "--policy", "memory-aware", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "on 4 GPUs (2 x 80 GB, 2 x 24 GB)" in printed and "memory-aware" in printed
    rows = json.loads((out / "comparison.json").read_text())
    assert [r["policy"] for r in rows] == ["edf", "memory-aware"]
    assert "| memory-aware" in (out / "comparison.md").read_text()
    assert (out / "comparison.png").stat().st_size > 0 and (out / "edf" / "summary.json").exists()
    assert main(["simulate", str(w), "--gpus", "8", "--gpu-memory", "80x2,24x2", "--policy", "edf",
                 "--out", str(out)]) == 2
    assert "describes 4 GPUs but the pool has 8" in capsys.readouterr().err
    assert main(["simulate", str(w), "--profile", "A100", "--policy", "edf", "--out", str(out)]) == 2
    assert "no shipped cost table for profile 'A100'" in capsys.readouterr().err


# generate: the tiny pipelines on the CPU, the text encoders and VAE eager (compiling them is test_pipelines.py's)
_EAGER = ["--device", "cpu", "--eager", "vae", "--eager", "text_encoder"]


@pytest.mark.timeout(600)
def test_generate_tiny_flux_writes_the_image_and_checks_it(tmp_path, capsys):
    pytest.importorskip("transformers")
    from PIL import Image

    argv = ["generate", "--tiny", "--pipeline", "flux", "--check", "--resident-fraction", "0", "--out",
            str(tmp_path / "cat.png"), *_EAGER, "--eager", "text_encoder_2"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "denoising (chunkflow)" in captured.err and "2/2" in captured.err   # the progress bar over the steps
    summary = next(line for line in captured.out.splitlines() if line.startswith("generated in"))
    assert "peak device memory n/a (cpu)" in summary and "KiB/step" in summary   # resident fraction 0: all streamed
    assert "(OK, tolerance" in captured.out
    assert Image.open(tmp_path / "cat.png").size == (16, 16)


@pytest.mark.timeout(600)
def test_generate_tiny_wan_writes_a_video(tmp_path, capsys):
    pytest.importorskip("transformers")
    from PIL import Image

    assert main(["generate", "--tiny", "--pipeline", "wan", "--out", str(tmp_path / "clip.mp4"), *_EAGER]) == 0
    out = capsys.readouterr().out
    if (tmp_path / "clip.mp4").exists():
        assert (tmp_path / "clip.mp4").stat().st_size > 0
    else:   # no imageio-ffmpeg: a GIF, and the output says so
        assert "imageio-ffmpeg is not installed" in out
        clip = Image.open(tmp_path / "clip.gif")
        assert clip.n_frames == 5 and clip.size == (16, 16)


@pytest.mark.parametrize("argv, says", [
    (["--pipeline", "sd9", "--out", "x.png"], "invalid choice: 'sd9'"),
    (["--pipeline", "wan", "--tiny", "--out", "x.png"], "--pipeline wan makes a video; name a .mp4 or .gif file"),
    (["--model", "{tmp}/no-such-model", "--out", "x.png"], "no folder {tmp}/no-such-model"),
    (["--tiny", "--memory-budget", "12 parsecs", "--out", "x.png"], "--memory-budget: cannot parse"),
    (["--random-weights", "--out", "x.png"], "--random-weights needs cfcompile.full_pipelines"),
])
def test_generate_errors_show_the_commands_usage(argv, says, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "cfcompile.full_pipelines", None)   # as where it is missing: ImportError
    with pytest.raises(SystemExit) as e:
        main(["generate", *(a.format(tmp=tmp_path) for a in argv)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage: cfcompile generate " in err and says.format(tmp=tmp_path) in err
