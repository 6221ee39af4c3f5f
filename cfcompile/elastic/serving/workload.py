"""Workloads: requests as JSON lines, and seeded generators scaled to a pool and a target load.

One request a line (``Request.to_json``)::

    {"id": "r00000", "arrival_s": 1.25, "model": "qwen-image", "height": 1024, "width": 1024, "frames": 1,
     "steps": 50, "cfg": false, "class": "M", "priority": 1, "deadline_s": 77.3}

``deadline_s`` may be replaced by ``slo_scale`` (deadline = arrival + slo_scale x single-GPU time, resolved by the
simulator against its cost table). Generators (``mix`` = name, or name:model to keep one model)::

    gfdit     GF-DiT's mix: piecewise Poisson, warm-up 0.5x, mid-load 1x, press 1.7x, drain (last 10%: none);
              the share of small requests grows with the rate
    bursty    four cycles of a quiet stretch (0.4x) then a burst (2.8x)
    uniform   one Poisson rate, S / M / L equally likely

Shapes: Qwen-Image S/M/L = 512², 1024², 1536²; Wan S/M/L = 480x832x49, 480x832x81, 720x1280x81 (true CFG);
50 steps; deadline = arrival + α x single-GPU time, α = 2.0 / 2.5 / 3.5; priority 2 / 1 / 0. Rates are scaled so
that the expected single-GPU work over the arrival window equals ``load x gpus x window``.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from .costs import CostTable, synthetic_costs
from .requests import Request

logger = logging.getLogger(__name__)

SHAPES: dict[str, dict[str, tuple[int, int, int, bool]]] = {
    "qwen-image": {"S": (512, 512, 1, False), "M": (1024, 1024, 1, False), "L": (1536, 1536, 1, False)},
    "wan": {"S": (480, 832, 49, True), "M": (480, 832, 81, True), "L": (720, 1280, 81, True)},
}
"""model -> class -> (height, width, frames, cfg)."""
ALPHA = {"S": 2.0, "M": 2.5, "L": 3.5}
"""Deadline slack per class, in units of the request's single-GPU time."""
PRIORITY = {"S": 2, "M": 1, "L": 0}


@dataclass(frozen=True)
class Phase:
    """A stretch of the trace with one Poisson rate and class mix."""

    start: float
    """Start, as a fraction of the trace."""
    end: float
    """End, as a fraction of the trace."""
    rate: float
    """Relative arrival rate (the generator scales all phases by one factor to hit the load)."""
    mix: Mapping[str, float]
    """Class -> weight."""


MIXES: dict[str, tuple[Phase, ...]] = {
    "gfdit": (Phase(0.0, 0.1, 0.5, {"S": 0.50, "M": 0.35, "L": 0.15}),
              Phase(0.1, 0.6, 1.0, {"S": 0.55, "M": 0.35, "L": 0.10}),
              Phase(0.6, 0.9, 1.7, {"S": 0.70, "M": 0.25, "L": 0.05}),
              Phase(0.9, 1.0, 0.0, {"S": 1.0})),
    "bursty": tuple(p for i in range(4) for p in (
        Phase(i / 4, i / 4 + 0.1875, 0.4, {"S": 0.6, "M": 0.3, "L": 0.1}),
        Phase(i / 4 + 0.1875, (i + 1) / 4, 2.8, {"S": 0.6, "M": 0.3, "L": 0.1}))),
    "uniform": (Phase(0.0, 1.0, 1.0, {"S": 1.0, "M": 1.0, "L": 1.0}),),
}


def _shape_request(rid: str, model: str, klass: str, arrival: float, steps: int, costs: CostTable) -> Request:
    h, w, f, cfg = SHAPES[model][klass]
    r = Request(rid, model, h, w, f, steps, cfg, klass, PRIORITY[klass], arrival)
    return Request(rid, model, h, w, f, steps, cfg, klass, PRIORITY[klass], arrival,
                   deadline_s=arrival + ALPHA[klass] * costs.single_gpu_s(r))


def generate_workload(mix: str = "gfdit", gpus: int = 8, minutes: float = 10.0, load: float = 1.0, seed: int = 0,
                      *, costs: CostTable | None = None, steps: int = 50) -> list[Request]:
    """Seeded requests for ``gpus`` GPUs over ``minutes`` at offered ``load`` (1.0 = the pool's single-GPU capacity).

    ``mix``: ``gfdit``, ``bursty`` or ``uniform``, optionally ``:model`` (``gfdit:qwen-image``) to keep one model;
    otherwise every request picks Qwen-Image or Wan with equal odds. ``costs`` (default synthetic) prices the
    single-GPU times behind deadlines and load.
    """
    name, _, only = mix.partition(":")
    if name not in MIXES:
        raise ValueError(f"unknown mix {mix!r}; mixes are {sorted(MIXES)}, optionally ':<model>' with a model of "
                         f"{sorted(SHAPES)}")
    if only and only not in SHAPES:
        raise ValueError(f"mix {mix!r}: unknown model {only!r}; generated models are {sorted(SHAPES)}")
    for what, v in (("gpus", gpus), ("minutes", minutes), ("load", load)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"generate_workload: {what} must be > 0, got {v!r}")
    costs = costs or synthetic_costs()
    models = [only] if only else sorted(SHAPES)
    phases, horizon = MIXES[name], minutes * 60.0
    mean_t = {k: sum(costs.single_gpu_s(_shape_request("x", m, k, 0.0, steps, costs)) for m in models)
              / len(models) for k in ALPHA}
    work, active = 0.0, [p for p in phases if p.rate > 0]
    for p in active:
        total = sum(p.mix.values())
        work += p.rate * (p.end - p.start) * horizon * sum(w / total * mean_t[k] for k, w in p.mix.items())
    window = (max(p.end for p in active) - min(p.start for p in active)) * horizon
    scale = load * gpus * window / work  # requests per second at relative rate 1
    rng = random.Random(seed)
    out: list[Request] = []
    for p in active:
        t, end, classes = p.start * horizon, p.end * horizon, sorted(p.mix)
        while True:
            t += rng.expovariate(scale * p.rate)
            if t >= end:
                break
            klass = rng.choices(classes, [p.mix[k] for k in classes])[0]
            model = models[rng.randrange(len(models))]
            out.append(_shape_request(f"r{len(out):05d}", model, klass, round(t, 6), steps, costs))
    logger.info("workload %s: %d requests on %d GPUs over %.1f min at load %.2f (seed %d)", mix, len(out), gpus,
                minutes, load, seed)
    return out


def write_workload(requests: Iterable[Request], path) -> Path:
    """JSON lines, one request a line, keys sorted."""
    path = Path(path)
    path.write_text("".join(json.dumps(r.to_json(), sort_keys=True) + "\n" for r in requests))
    return path


def read_workload(path) -> list[Request]:
    """Parse a JSON-lines workload; ValueError names the line and what is wrong with it (blank lines skipped)."""
    path = Path(path)
    out, seen = [], {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno})") from None
        try:
            r = Request.from_json(data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}:{n}: {e}") from None
        if r.id in seen:
            raise ValueError(f"{path}:{n}: request id {r.id!r} already used on line {seen[r.id]}")
        seen[r.id] = n
        out.append(r)
    return out


__all__ = ["generate_workload", "read_workload", "write_workload", "MIXES", "SHAPES", "ALPHA", "PRIORITY", "Phase"]
