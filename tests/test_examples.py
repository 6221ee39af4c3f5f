"""The scripts in examples/ run on the CPU with their tiny pipelines (``--tiny``), each in a fresh interpreter, as a
user would run them; what they print and write is checked. The VAEs stay eager here (``--eager vae``): compiling
them is covered by tests/test_pipelines.py and is the slowest part of a CPU compile."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_example(script: str, *args: str, tmp_path: Path) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               CFCOMPILE_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


def test_plan_without_gpu(tmp_path):
    out = run_example("plan_without_gpu.py", "--tiny", "--out", "plan", tmp_path=tmp_path)
    assert "predicted step" in out and "transformer_blocks.0" in out
    assert (tmp_path / "plan" / "plan.json").is_file() and (tmp_path / "plan" / "timeline.json").is_file()


def test_text_to_image(tmp_path):
    pytest.importorskip("transformers")
    # the VAE offloaded but eager: compiling its decoder is tests/test_pipelines.py's (the slowest C++ compile here)
    out = run_example("text_to_image.py", "--tiny", "--check", "--eager", "vae", "--out", "cat.png", tmp_path=tmp_path)
    assert "max difference to the plain pipeline" in out   # the script exits non-zero if the images differ
    assert "'transformer': 'regional'" in out and "'text_encoder_2': 'whole'" in out and "'vae': 'eager'" in out
    from PIL import Image

    assert Image.open(tmp_path / "cat.png").size == (16, 16)


def test_text_to_video(tmp_path):
    pytest.importorskip("transformers")
    out = run_example("text_to_video.py", "--tiny", "--eager", "vae", "--out", "clip.gif", tmp_path=tmp_path)
    assert "'transformer_2': 'regional'" in out and "'vae': 'eager'" in out
    from PIL import Image

    clip = Image.open(tmp_path / "clip.gif")
    assert clip.n_frames == 5 and clip.size == (16, 16)


def test_ulysses_under_torchrun(tmp_path):
    pytest.importorskip("diffusers")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               CFCOMPILE_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(ROOT / "examples" / "ulysses.py"), "--tiny", "--check"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"ulysses.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    # the ranks print at the same moment: their lines can run together on one line of the captured stdout
    lines = sorted(re.findall(r"rank \d/2: [^\n]*?parallelism [0-9.e+-]+", proc.stdout))
    assert [line.split(":")[0] for line in lines] == ["rank 0/2", "rank 1/2"], proc.stdout
    assert all("max difference to the model without parallelism" in line for line in lines)
    assert len({line.split("plan ")[1].split(",")[0] for line in lines}) == 1   # every rank made the same plan
