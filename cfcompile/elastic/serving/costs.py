"""Cost tables as data: stage time per (model, tokens, SP degree), weights, streaming, state size.

Every stage of every model has, per SP degree ``d``, coefficients of ``t_ms = a·x² + b·x + c`` where ``x`` is the
request's latent token count (``denoise`` is per step and per transformer pass; true CFG multiplies it by
``cfg_factor``). A degree missing from a stage uses the largest tabulated degree below it, so single-GPU stages
(``text_encode``, ``vae_decode``) are tabulated at degree 1 only and cost the same on any group. The SP degrees a
policy may pick for a model are the degrees of its ``denoise`` row.

JSON form (``CostTable.save`` / ``load``)::

    {"version": 1, "models": {"qwen-image": {
        "weight_gb": 58.0, "activation_gb": 10.0, "patch": 16, "temporal": 1, "cfg_factor": 2.0,
        "stream_factor": 1.6, "stream_step_ms": 900.0, "load_ms": null,
        "state_bytes_per_token": 256, "state_bytes": 3.7e6,
        "stages": {"denoise": {"1": [4.8e-06, 0.1218, 25.2], "2": [...], "4": [...]}, "text_encode": {"1": [...]},
                   ...}}}}

:func:`synthetic_costs` builds a table from GF-DiT's Qwen-Image H20 numbers plus a synthetic Wan; :func:`refit`
replaces a stage's coefficients with a least-squares fit of measured ``(tokens, degree, ms)`` rows.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping

from .requests import DENOISE, PREPARE, STAGES, TEXT_ENCODE, VAE_DECODE, Request, Task

logger = logging.getLogger(__name__)

Coeffs = tuple[float, float, float]
_SCALARS = ("weight_gb", "activation_gb", "patch", "temporal", "cfg_factor", "stream_factor", "stream_step_ms",
            "load_ms", "state_bytes_per_token", "state_bytes", "dit_gb", "h2d_gbs", "stream_reserve_gb")


@dataclass(frozen=True)
class ModelCosts:
    """One model's cost rows and memory facts; validated on construction."""

    name: str
    """Model name, as requests spell it."""
    stages: Mapping[str, Mapping[int, Coeffs]]
    """stage -> SP degree -> (a, b, c) of ``ms = a·x² + b·x + c``, x = latent tokens; all of ``STAGES``."""
    weight_gb: float = 0.0
    """Weights of the whole pipeline (encoder, transformer, VAE) that a GPU keeps resident."""
    activation_gb: float = 0.0
    """Working memory a GPU needs besides the weights while it runs the model."""
    patch: int = 16
    """Pixels per latent token along height and width (VAE downscale x transformer patch)."""
    temporal: int = 1
    """Frames per latent frame after the first (Wan's VAE: 4); latent frames = 1 + (frames - 1) // temporal."""
    cfg_factor: float = 2.0
    """Denoise cost multiplier for a request with true CFG."""
    stream_factor: float = 1.5
    """Slowdown of every stage when the model does not fit and is streamed from host memory (chunkflow)."""
    stream_step_ms: float = 0.0
    """Streamed denoise steps take at least this long (the weight copy per step that compute cannot hide)."""
    load_ms: float | None = None
    """Time to make the model resident on a GPU; None = weight_gb / the pool's host-to-device bandwidth."""
    state_bytes_per_token: float = 256.0
    """Request state that a reshard moves, per latent token (latents in fp32)."""
    state_bytes: float = 4e6
    """Request state independent of size (text embeddings)."""
    dit_gb: float = 0.0
    """Transformer weights chunkflow streams. With ``h2d_gbs`` set, streaming is priced by bytes (see
    :meth:`streamed_step_ms`) instead of ``stream_factor`` / ``stream_step_ms``."""
    h2d_gbs: float = 0.0
    """Host-to-device bandwidth the weights stream at (the profile's), GB/s; 0 = price streaming by factors."""
    stream_reserve_gb: float = 0.0
    """Memory a streaming GPU cannot give to resident weights besides the activations: chunkflow's arena (from a
    ``plan_model`` at a memory budget) and the VAE."""
    sources: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    """stage -> SP degree -> where the row came from (``plan_model H100 2026-12-07``, ``estimate: ...``,
    ``measured ...``); rows without one are unattributed (the synthetic table)."""

    def __post_init__(self):
        missing = [s for s in STAGES if s not in self.stages]
        if missing:
            raise ValueError(f"cost table model {self.name!r}: stages {missing} missing; each model needs {STAGES}")
        rows = {}
        for stage, per_degree in self.stages.items():
            if stage not in STAGES:
                raise ValueError(f"cost table model {self.name!r}: unknown stage {stage!r}; stages are {STAGES}")
            if not per_degree or 1 not in per_degree:
                raise ValueError(f"cost table model {self.name!r}, stage {stage!r}: needs a row for degree 1, "
                                 f"got degrees {sorted(per_degree)}")
            row = {}
            for d, co in per_degree.items():
                if isinstance(d, bool) or not isinstance(d, int) or d < 1:
                    raise ValueError(f"cost table model {self.name!r}, stage {stage!r}: degree {d!r} is not a "
                                     "positive int")
                if len(co) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in co):
                    raise ValueError(f"cost table model {self.name!r}, stage {stage!r}, degree {d}: expected "
                                     f"[a, b, c] (three finite numbers), got {co!r}")
                row[d] = tuple(float(v) for v in co)
            rows[stage] = dict(sorted(row.items()))
        object.__setattr__(self, "stages", rows)
        srcs = {}
        for stage, per_degree in (self.sources or {}).items():
            if stage not in rows or not all(isinstance(d, int) and d in rows[stage] and isinstance(v, str)
                                            for d, v in per_degree.items()):
                raise ValueError(f"cost table model {self.name!r}: sources[{stage!r}] = {dict(per_degree)!r} must "
                                 f"map degrees of that stage's rows ({sorted(rows.get(stage, {}))}) to strings")
            srcs[stage] = dict(sorted(per_degree.items()))
        object.__setattr__(self, "sources", srcs)
        for name in _SCALARS:
            v = getattr(self, name)
            if v is None and name == "load_ms":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"cost table model {self.name!r}: {name} must be a finite number >= 0, got {v!r}")
        if self.patch < 1 or self.temporal < 1 or self.stream_factor < 1 or self.cfg_factor < 1:
            raise ValueError(f"cost table model {self.name!r}: patch and temporal must be >= 1 and stream_factor, "
                             f"cfg_factor >= 1; got {self.patch}, {self.temporal}, {self.stream_factor}, "
                             f"{self.cfg_factor}")

    @property
    def degrees(self) -> tuple[int, ...]:
        """SP degrees a denoise chunk may run at (the tabulated ones)."""
        return tuple(self.stages[DENOISE])

    def tokens(self, request: Request) -> int:
        """Latent tokens of ``request`` (the x of every stage)."""
        if request.height < self.patch or request.width < self.patch:
            raise ValueError(f"request {request.id}: {request.height}x{request.width} is smaller than one "
                             f"{self.patch}-pixel latent patch of {self.name}")
        return (request.height // self.patch) * (request.width // self.patch) * (1 + (request.frames - 1)
                                                                               // self.temporal)

    def stage_ms(self, stage: str, x: float, degree: int = 1) -> float:
        """``a·x² + b·x + c`` for the largest tabulated degree <= ``degree`` (never below 0)."""
        row = self.stages[stage]
        d = max((k for k in row if k <= degree), default=1)
        a, b, c = row[d]
        return max(0.0, a * x * x + b * x + c)

    @property
    def streams_by_bytes(self) -> bool:
        """Streaming is priced from bytes and bandwidth (a planned table), not by ``stream_factor``."""
        return self.dit_gb > 0 and self.h2d_gbs > 0

    def streamed_step_ms(self, step_ms: float, mem_gb: float | None) -> float:
        """A denoise pass that takes ``step_ms`` resident, streamed on GPUs of ``mem_gb`` (None: the largest).

        By bytes: ``max(compute, non-resident bytes / H2D)``, where a GPU keeps resident what its memory holds
        besides the activations and the arena (chunkflow hides the copies behind compute up to that bound; under
        SP every rank streams the same bytes, so wider groups gain less). Otherwise ``stream_factor`` and
        ``stream_step_ms``."""
        if self.streams_by_bytes and mem_gb is not None:
            resident = max(0.0, mem_gb - self.activation_gb - self.stream_reserve_gb)
            return max(step_ms, max(0.0, self.dit_gb - resident) / self.h2d_gbs * 1e3)
        return max(step_ms * self.stream_factor, self.stream_step_ms)

    def _streamed_other_ms(self, stage: str, ms: float) -> float:
        # by bytes: the GPU gave its memory to transformer chunks, so the text encoder (and VAE) come back over H2D
        if self.streams_by_bytes:
            return ms + (max(0.0, self.weight_gb - self.dit_gb) / self.h2d_gbs * 1e3 if stage == TEXT_ENCODE else 0)
        return ms * self.stream_factor

    def task_ms(self, request: Request, task: Task, degree: int, streamed: bool = False,
                mem_gb: float | None = None) -> float:
        """Compute time of ``task`` of ``request`` on ``degree`` GPUs (no model load, no reshard); ``streamed`` on
        GPUs of ``mem_gb`` (the group's smallest)."""
        x = self.tokens(request)
        if task.kind == DENOISE:
            step = self.stage_ms(DENOISE, x, degree) * (self.cfg_factor if request.cfg else 1.0)
            if streamed:
                step = self.streamed_step_ms(step, mem_gb)
            return step * task.n_steps
        ms = self.stage_ms(task.kind, x, degree if task.parallel else 1)
        return self._streamed_other_ms(task.kind, ms) if streamed else ms

    def request_ms(self, request: Request, degree: int = 1, streamed: bool = False,
                   mem_gb: float | None = None) -> float:
        """A request's whole compute time with its DiT stages at ``degree`` (the single-GPU time at 1)."""
        x = self.tokens(request)
        step = self.stage_ms(DENOISE, x, degree) * (self.cfg_factor if request.cfg else 1.0)
        if streamed:
            step = self.streamed_step_ms(step, mem_gb)
        other = {TEXT_ENCODE: self.stage_ms(TEXT_ENCODE, x), PREPARE: self.stage_ms(PREPARE, x, degree),
                 VAE_DECODE: self.stage_ms(VAE_DECODE, x)}
        if streamed:
            other = {k: self._streamed_other_ms(k, v) for k, v in other.items()}
        return step * request.steps + sum(other.values())

    def state_size(self, request: Request) -> float:
        """Bytes a reshard of ``request`` sends to each new GPU."""
        return self.state_bytes + self.state_bytes_per_token * self.tokens(request)

    def to_json(self) -> dict:
        out = {name: getattr(self, name) for name in _SCALARS}
        out["stages"] = {s: {str(d): list(co) for d, co in row.items()} for s, row in self.stages.items()}
        if self.sources:
            out["sources"] = {s: {str(d): v for d, v in row.items()} for s, row in self.sources.items()}
        return out


@dataclass(frozen=True)
class CostTable:
    """Cost rows of every model a pool serves; JSON-serialisable (:meth:`save`, :meth:`load`)."""

    models: Mapping[str, ModelCosts] = field(default_factory=dict)
    """Model name -> its costs."""

    def model(self, name: str) -> ModelCosts:
        """Costs of ``name``; ValueError naming the known models otherwise."""
        try:
            return self.models[name]
        except KeyError:
            raise ValueError(f"unknown model {name!r}: the cost table has {sorted(self.models)}; add it to the "
                             "table (CostTable.load a JSON with it, or refit one from measurements)") from None

    def single_gpu_s(self, request: Request) -> float:
        """The request's time on one GPU with the model resident (the unit of SLOs and load)."""
        return self.model(request.model).request_ms(request, 1) / 1e3

    def to_json(self) -> dict:
        return {"version": 1, "models": {name: m.to_json() for name, m in sorted(self.models.items())}}

    @classmethod
    def from_json(cls, data: object, where: str = "cost table") -> "CostTable":
        """Parse :meth:`to_json`'s form; ValueError says what is wrong and where."""
        if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
            raise ValueError(f"{where}: expected {{'version': 1, 'models': {{name: {{...}}}}}}")
        if data.get("version", 1) != 1:
            raise ValueError(f"{where}: version {data.get('version')!r} is not supported (expected 1)")
        models = {}
        for name, m in data["models"].items():
            if not isinstance(m, dict) or not isinstance(m.get("stages"), dict):
                raise ValueError(f"{where}: model {name!r} needs a 'stages' object")
            unknown = sorted(set(m) - set(_SCALARS) - {"stages", "sources"})
            if unknown:
                raise ValueError(f"{where}: model {name!r} has unknown keys {unknown}; allowed: "
                                 f"{sorted(_SCALARS + ('stages', 'sources'))}")
            stages = {}
            for stage, row in m["stages"].items():
                if not isinstance(row, dict):
                    raise ValueError(f"{where}: model {name!r}, stage {stage!r}: expected {{degree: [a, b, c]}}")
                try:
                    stages[stage] = {int(d): tuple(co) for d, co in row.items()}
                except (TypeError, ValueError):
                    raise ValueError(f"{where}: model {name!r}, stage {stage!r}: degrees must be integers and "
                                     f"coefficients lists, got {row!r}") from None
            scalars = {k: v for k, v in m.items() if k in _SCALARS}
            try:
                sources = {st: {int(d): v for d, v in row.items()} for st, row in m.get("sources", {}).items()}
            except (AttributeError, TypeError, ValueError):
                raise ValueError(f"{where}: model {name!r}: 'sources' must be {{stage: {{degree: text}}}}") from None
            models[name] = ModelCosts(name=name, stages=stages, sources=sources, **scalars)
        return cls(models)

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path) -> "CostTable":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        return cls.from_json(data, where=str(path))


def fit_quadratic(xs: Iterable[float], ys: Iterable[float]) -> Coeffs:
    """Least-squares (a, b, c) of ``y = a·x² + b·x + c``; fewer distinct x drop a (two) or a and b (one)."""
    import numpy as np

    x, y = np.asarray(list(xs), dtype=float), np.asarray(list(ys), dtype=float)
    if x.size == 0 or x.size != y.size:
        raise ValueError(f"fit_quadratic: need as many x as y and at least one point, got {x.size} and {y.size}")
    order = min(2, len(np.unique(x)) - 1)
    cols = [x**p for p in range(order, -1, -1)]
    sol = np.linalg.lstsq(np.stack(cols, axis=1), y, rcond=None)[0]
    return tuple(float(v) for v in [0.0] * (2 - order) + list(sol))


def _by_degree(rows: Iterable[tuple[float, int, float]], who: str) -> dict[int, list[tuple[float, float]]]:
    by_degree: dict[int, list[tuple[float, float]]] = {}
    for i, row in enumerate(rows):
        try:
            x, d, ms = row
            by_degree.setdefault(int(d), []).append((float(x), float(ms)))
        except (TypeError, ValueError):
            raise ValueError(f"{who}: row {i} is {row!r}; expected (tokens, degree, ms)") from None
    if not by_degree:
        raise ValueError(f"{who}: no rows")
    return by_degree


def refit(table: CostTable, model: str, rows: Iterable[tuple[float, int, float]], stage: str = DENOISE,
          source: str = "measured") -> CostTable:
    """``table`` with ``model``'s ``stage`` coefficients refit from measured ``(tokens, degree, ms)`` rows.

    Degrees present in ``rows`` are replaced (their source becomes ``source``); the others keep their
    coefficients. Returns a new table.
    """
    if stage not in STAGES:
        raise ValueError(f"refit: unknown stage {stage!r}; stages are {STAGES}")
    base = table.model(model)
    new_row, new_src = dict(base.stages[stage]), dict(base.sources.get(stage, {}))
    for d, pts in sorted(_by_degree(rows, "refit").items()):
        new_row[d] = fit_quadratic([p[0] for p in pts], [p[1] for p in pts])
        new_src[d] = f"{source} ({len(pts)} rows)"
        logger.info("refit %s/%s degree %d from %d rows: a=%.3g b=%.3g c=%.3g", model, stage, d, len(pts),
                    *new_row[d])
    stages = {**base.stages, stage: new_row}
    sources = {**base.sources, stage: new_src} if base.sources or new_src else {}
    return CostTable({**table.models, model: replace(base, stages=stages, sources=sources)})


def calibrate(table: CostTable, model: str, rows: Iterable[tuple[float, int, float]], stage: str = DENOISE,
              source: str = "measured") -> CostTable:
    """``table`` with every degree of ``model``'s ``stage`` scaled by the median of measured / predicted.

    For a few measurements: they correct the level of the prediction (a profile's efficiency off by 20%) while
    the predicted shape across tokens and degrees stays, including degrees nobody measured. :func:`refit`
    replaces the measured degrees instead (enough points per degree: three or more tokens).
    """
    if stage not in STAGES:
        raise ValueError(f"calibrate: unknown stage {stage!r}; stages are {STAGES}")
    base = table.model(model)
    ratios = sorted(ms / base.stage_ms(stage, x, d) for d, pts in _by_degree(rows, "calibrate").items()
                    for x, ms in pts if base.stage_ms(stage, x, d) > 0)
    if not ratios:
        raise ValueError(f"calibrate: the table predicts 0 ms for every row of {model}/{stage}; use refit")
    k = statistics.median(ratios)
    row = {d: (a * k, b * k, c * k) for d, (a, b, c) in base.stages[stage].items()}
    old = base.sources.get(stage, {})
    src = {d: f"{old.get(d, 'table')} x {k:.3f} ({source}, {len(ratios)} rows)" for d in row}
    logger.info("calibrate %s/%s by %.3f (median of %d measured / predicted)", model, stage, k, len(ratios))
    return CostTable({**table.models, model: replace(base, stages={**base.stages, stage: row},
                                                     sources={**base.sources, stage: src})})


# GF-DiT's Qwen-Image on H20, ms per step at SP 1/2/4 for 512², 1024², 1536² (1024 / 4096 / 9216 tokens)
QWEN_IMAGE_H20 = {1: (155, 605, 1557), 2: (161, 350, 880), 4: (172, 207, 464)}
_QWEN_TOKENS = (1024, 4096, 9216)


def synthetic_costs() -> CostTable:
    """A table for tests and simulations without a GPU.

    ``qwen-image``: denoise fit exactly through GF-DiT's H20 numbers (small images fastest on one GPU, large ones
    on four); other stages, weights (58 GB pipeline) and streaming are plausible guesses. ``wan`` (Wan 14B-like):
    synthetic ``a·x²/d + (b/d + comm·(d-1)/d)·x + c + 25(d-1)`` at SP 1/2/4/8 (the 49-frame clip is fastest at 4,
    the others at 8); 41 GB of weights, so the two models cannot share one 96 GB GPU.
    """
    qwen_denoise = {d: fit_quadratic(_QWEN_TOKENS, ms) for d, ms in QWEN_IMAGE_H20.items()}
    qwen = ModelCosts("qwen-image", {TEXT_ENCODE: {1: (0.0, 0.0, 40.0)}, PREPARE: {1: (0.0, 0.001, 10.0)},
                                     DENOISE: qwen_denoise, VAE_DECODE: {1: (0.0, 0.03, 20.0)}},
                      weight_gb=58.0, activation_gb=10.0, patch=16, temporal=1, stream_factor=1.6,
                      stream_step_ms=900.0, state_bytes_per_token=256.0, state_bytes=3.7e6)
    a, b, c, comm = 8e-7, 0.02, 30.0, 0.004
    wan_denoise = {d: (a / d, b / d + comm * (d - 1) / d, c + 25.0 * (d - 1)) for d in (1, 2, 4, 8)}
    wan = ModelCosts("wan", {TEXT_ENCODE: {1: (0.0, 0.0, 30.0)}, PREPARE: {1: (0.0, 0.0005, 30.0)},
                             DENOISE: wan_denoise, VAE_DECODE: {1: (0.0, 0.15, 200.0)}},
                     weight_gb=41.0, activation_gb=20.0, patch=16, temporal=4, stream_factor=1.25,
                     stream_step_ms=1500.0, state_bytes_per_token=256.0, state_bytes=4.2e6)
    return CostTable({"qwen-image": qwen, "wan": wan})


__all__ = ["ModelCosts", "CostTable", "fit_quadratic", "refit", "calibrate", "synthetic_costs", "QWEN_IMAGE_H20"]
