"""Cost tables from our own cost model, without a GPU: ``plan_model`` at each shape and SP degree, fitted.

GF-DiT profiles every stage on the GPUs; we predict. For each model and SP degree ``d``::

    denoise      plan_model(preset, Workload(h, w, frames, sp_degree=d), profile): the predicted compute time of one
                 transformer call with every weight resident (Ulysses all-to-alls over the profile's link
                 included, ``estimate_costs``), at each shape of ``SHAPES``; t = a·x² + b·x + c fit over the
                 latent tokens x (three shapes: the quadratic goes through them)
    prepare      0 ms: noise latents and timesteps, nothing a stage table needs (estimate, marked so)
    text_encode  estimate, not planned (the presets are transformers only): 2 x parameters x text tokens FLOPs at
                 the profile's matmul rate plus one read of the encoder's weights (public parameter counts)
    vae_decode   estimate, not planned: the diffusers VAE decoder's FLOPs counted on the meta device
                 (``torch.utils.flop_counter``) at each shape, at the profile's matmul rate. A lower bound:
                 convolutions over video reach less than the matmul efficiency on real GPUs
    streaming    by bytes, from the same plan: a GPU that cannot hold the pipeline keeps resident what its memory
                 holds besides activations and chunkflow's arena; a step takes max(compute, non-resident transformer
                 bytes / H2D). ``costs_from_model`` checks it against ``plan_model(memory_budget=...)`` at one point
                 per model and keeps that check in the table's notes.

Each row records where it came from (``ModelCosts.sources``). A degree the preset cannot plan (heads or tokens do
not split) falls back to the degree-1 plan divided by d without all-to-alls, marked ``estimate``. Planning a
full-size shape traces the model on the meta device (~35 s on a CPU, then ~8 s per degree; ``planning`` caches
the trace per shape), so the generated tables ship as data (``data/costs_<profile>.json``, :func:`shipped_costs`)
and ``cfcompile costs --profile H100 --out costs.json`` regenerates them.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from .costs import CostTable, ModelCosts, fit_quadratic
from .requests import DENOISE, PREPARE, TEXT_ENCODE, VAE_DECODE

logger = logging.getLogger(__name__)

DATA = Path(__file__).parent / "data"
SHAPES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "flux": ((512, 512, 1), (1024, 1024, 1), (1536, 1536, 1)),
    "qwen-image": ((512, 512, 1), (1024, 1024, 1), (1536, 1536, 1)),
    "wan": ((480, 832, 49), (480, 832, 81), (720, 1280, 81)),
}
"""(height, width, frames) planned per model: GF-DiT's S / M / L (Flux at Qwen-Image's sizes)."""
DEGREES = (1, 2, 4, 8)
GPU_MEMORY_GB = {"H100": 80.0, "H200": 141.0}
"""Memory of one GPU of a profile (vendor sheets, SXM parts), GB: the default pool memory of ``simulate``."""
STREAM_CHECK_BUDGET_GB = 16.0
"""Memory budget of the one ``plan_model(memory_budget=...)`` per model that the streaming formula is checked on."""


@dataclass(frozen=True)
class Pipeline:
    """What a model's pipeline holds besides the transformer, for the stages ``plan_model`` cannot plan."""

    text_params: float
    """Text encoder parameters (bf16 on the GPU)."""
    text_encoder: str
    """Which encoder, with where its parameter count comes from."""
    vae_cls: str
    """diffusers VAE class, built on the meta device to count its parameters and decoder FLOPs."""
    vae_kwargs: Mapping[str, object]
    """Its config (the released pipeline's ``vae/config.json`` where it differs from the class defaults)."""


PIPELINES = {
    "flux": Pipeline(4.762e9 + 0.123e9, "T5-XXL encoder (4.762B, the 9.52 GB bf16 text_encoder_2 of FLUX.1-dev) "
                     "+ CLIP-L text (0.123B)", "AutoencoderKL",
                     dict(latent_channels=16, block_out_channels=(128, 256, 512, 512),
                          down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                          layers_per_block=2, use_quant_conv=False, use_post_quant_conv=False)),
    "qwen-image": Pipeline(8.29e9, "Qwen2.5-VL-7B (8.29B, the 16.6 GB bf16 text_encoder of Qwen-Image)",
                           "AutoencoderKLQwenImage", {}),
    "wan": Pipeline(5.68e9, "UMT5-XXL encoder (5.68B, the 11.4 GB bf16 text encoder of Wan 2.1)",
                    "AutoencoderKLWan", {}),
}


def _profile(profile):
    from ...costmodel.profiles import DeviceProfile, resolve_profile

    return profile if isinstance(profile, DeviceProfile) else resolve_profile(profile, "cpu")


@functools.lru_cache(maxsize=None)
def _plan(model: str, shape: tuple[int, int, int], degree: int, profile_name: str, tiny: bool,
          budget_gb: float | None = None) -> dict:
    """One ``plan_model`` result, the numbers a cost table needs (cached per process)."""
    from ...planning import plan_model
    from ...presets import Workload

    h, w, f = shape
    wl = Workload(height=h, width=w, frames=f, sp_degree=degree)
    opts = {"memory_budget": int(budget_gb * 1e9)} if budget_gb is not None else {}
    t0 = time.perf_counter()
    # tiny: the tiny config with 8 heads, so that Ulysses at 2, 4 and 8 splits them
    report = plan_model(model, wl, profile=_profile(profile_name), tiny=tiny,
                        overrides={"num_attention_heads": 8} if tiny else None, **opts)
    p = report.prediction
    out = dict(compute_ms=p.compute_ms, step_ms=p.step_ms, activation_bytes=p.activation_bytes,
               arena_bytes=p.arena_bytes, resident_bytes=p.resident_bytes, weight_bytes=report.plan.host_bytes,
               streamed_bytes=report.plan.streamed_bytes)
    logger.info("plan_model %s %dx%dx%d SP %d on %s%s: %.1f ms compute (planned in %.1f s)", model, h, w, f, degree,
                profile_name, f" at {budget_gb:g} GB" if budget_gb else "", p.compute_ms, time.perf_counter() - t0)
    return out


@functools.lru_cache(maxsize=None)
def _vae(model: str, latent: tuple[int, ...]) -> tuple[float, float]:
    """(decoder FLOPs for one latent of shape ``latent``, VAE parameters): counted on the meta device."""
    import diffusers
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    pipe = PIPELINES[model]
    with torch.device("meta"):
        vae = getattr(diffusers, pipe.vae_cls)(**pipe.vae_kwargs)
    z = torch.empty(latent, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        vae.decode(z)
    return float(counter.get_total_flops()), float(sum(p.numel() for p in vae.parameters()))


def _latent(model: str, shape: tuple[int, int, int]) -> tuple[int, ...]:
    from ...presets import VAE_SCALE, WAN_TEMPORAL_SCALE

    h, w, f = shape
    if model == "flux":
        return (1, 16, h // VAE_SCALE, w // VAE_SCALE)
    return (1, 16, 1 + (f - 1) // WAN_TEMPORAL_SCALE, h // VAE_SCALE, w // VAE_SCALE)


def _tokens(model: str, shape: tuple[int, int, int]) -> int:
    from ...presets import Workload, get_preset

    h, w, f = shape
    return get_preset(model).tokens(Workload(height=h, width=w, frames=f))


def model_costs(model: str, profile="H100", degrees: Sequence[int] = DEGREES,
                shapes: Sequence[tuple[int, int, int]] | None = None, *, tiny: bool = False,
                check_budget_gb: float | None = STREAM_CHECK_BUDGET_GB) -> tuple[ModelCosts, dict]:
    """One model's cost rows from ``plan_model`` (see the module docstring), and notes (the streaming check).

    ``tiny``: the preset's tiny config with 8 heads (seconds; for tests: its rows say ``tiny``); ``shapes``:
    (height, width, frames) to plan, at least one (default ``SHAPES[model]``)."""
    from ...presets import get_preset

    if model not in PIPELINES:
        raise ValueError(f"costs_from_model: no pipeline facts for {model!r} (text encoder, VAE); models with them: "
                         f"{sorted(PIPELINES)}")
    degrees = tuple(sorted(set(degrees)))
    if not degrees or degrees[0] != 1 or any(isinstance(d, bool) or not isinstance(d, int) for d in degrees):
        raise ValueError(f"costs_from_model: degrees must be positive ints including 1 (every stage needs a "
                         f"degree-1 row), got {degrees}")
    shapes = tuple(tuple(s) for s in (shapes or SHAPES[model]))
    if not shapes:
        raise ValueError("costs_from_model: give at least one shape (height, width, frames)")
    prof = _profile(profile)
    date = datetime.date.today().isoformat()
    tag = f"plan_model {prof.name}{' tiny' if tiny else ''} {date}"
    preset, pipe = get_preset(model), PIPELINES[model]
    xs = [_tokens(model, s) for s in shapes]
    base = [_plan(model, s, 1, prof.name, tiny) for s in shapes]
    denoise, sources = {}, {}
    for d in degrees:
        try:
            ms = [base[i]["compute_ms"] if d == 1 else _plan(model, s, d, prof.name, tiny)["compute_ms"]
                  for i, s in enumerate(shapes)]
            sources[d] = tag
        except ValueError as e:  # heads or tokens do not split over d
            ms = [b["compute_ms"] / d for b in base]
            sources[d] = f"estimate: degree-1 {tag} / {d}, no all-to-all (not plannable: {e})"
            logger.warning("%s SP %d: %s", model, d, sources[d])
        denoise[d] = fit_quadratic(xs, ms)
    flops_rate = prof.matmul_tflops * prof.matmul_efficiency * 1e12
    text_tokens = preset.default_text_tokens
    text_ms = (2 * pipe.text_params * text_tokens / flops_rate
               + 2 * pipe.text_params / (prof.memory_gbs * prof.memory_efficiency * 1e9)) * 1e3
    vae = [_vae(model, _latent(model, s)) for s in shapes]
    vae_ms = [fl / flops_rate * 1e3 for fl, _ in vae]
    vae_gb = 2 * vae[0][1] / 1e9
    dit_gb = base[0]["weight_bytes"] / 1e9
    weight_gb = dit_gb + 2 * pipe.text_params / 1e9 + vae_gb
    activation_gb = max(b["activation_bytes"] for b in base) / 1e9
    cfg = preset.resolve({**preset.tiny_config, "num_attention_heads": 8} if tiny else None)
    per_token = cfg["in_channels"] * (cfg["patch_size"][0] * cfg["patch_size"][1] * cfg["patch_size"][2]
                                      if model == "wan" else 1) * 4  # fp32 latents a reshard moves
    text_dim = cfg.get("joint_attention_dim") or cfg["text_dim"]
    notes: dict = {"shapes": [list(s) for s in shapes], "tokens": xs,
                   "denoise_ms": {str(d): [round(a * x * x + b * x + c, 3) for x in xs]
                                  for d, (a, b, c) in denoise.items()},
                   "text_encoder": pipe.text_encoder}
    mid = len(shapes) // 2
    reserve_gb = vae_gb
    if check_budget_gb is not None and check_budget_gb * 1e9 < base[mid]["weight_bytes"]:
        plan = _plan(model, shapes[mid], 1, prof.name, tiny, check_budget_gb)
        reserve_gb += plan["arena_bytes"] / 1e9
        resident = check_budget_gb - plan["activation_bytes"] / 1e9 - plan["arena_bytes"] / 1e9
        formula = max(plan["compute_ms"], max(0.0, dit_gb - resident) / prof.h2d_gbs * 1e3)
        notes["stream_check"] = {"budget_gb": check_budget_gb, "shape": list(shapes[mid]),
                                 "plan_step_ms": round(plan["step_ms"], 3), "formula_step_ms": round(formula, 3),
                                 "plan_streamed_gb": round(plan["streamed_bytes"] / 1e9, 3),
                                 "arena_gb": round(plan["arena_bytes"] / 1e9, 3)}
        logger.info("%s streamed at %g GB: plan_model %.1f ms, max(compute, bytes / H2D) %.1f ms", model,
                    check_budget_gb, plan["step_ms"], formula)
    text_src = f"estimate: 2 x {pipe.text_params / 1e9:.2f}B params x {text_tokens} tokens at {prof.name} matmul " \
               f"rate + one weight read (not planned)"
    vae_src = f"estimate: {pipe.vae_cls} decoder FLOPs (meta-device count) at {prof.name} matmul rate, a lower " \
              f"bound (not planned)"
    costs = ModelCosts(
        model, {TEXT_ENCODE: {1: (0.0, 0.0, text_ms)}, PREPARE: {1: (0.0, 0.0, 0.0)}, DENOISE: denoise,
                VAE_DECODE: {1: _vae_fit(xs, vae_ms)}},
        weight_gb=weight_gb, activation_gb=activation_gb, patch=16, temporal=4 if model == "wan" else 1,
        cfg_factor=2.0, load_ms=weight_gb / prof.h2d_gbs * 1e3, state_bytes_per_token=float(per_token),
        state_bytes=float(text_tokens * text_dim * 2), dit_gb=dit_gb, h2d_gbs=prof.h2d_gbs,
        stream_reserve_gb=reserve_gb,
        sources={DENOISE: sources, TEXT_ENCODE: {1: text_src},
                 PREPARE: {1: "estimate: noise latents and timesteps, negligible (not planned)"},
                 VAE_DECODE: {1: vae_src}})
    return costs, notes


def _vae_fit(xs: list[int], ms: list[float]):
    """The VAE row: through the planned shapes; with fewer than three, through the origin too (a decoder's FLOPs
    grow with the latent: none, no work), so that one shape still gives a time that grows with the size."""
    if len(set(xs)) >= 3:
        return fit_quadratic(xs, ms)
    return fit_quadratic([0, *xs], [0.0, *ms])


def costs_from_model(models: Sequence[str] = ("flux", "qwen-image", "wan"), profile="H100",
                     degrees: Sequence[int] = DEGREES, shapes: Mapping[str, Sequence] | None = None, *,
                     tiny: bool = False, check_budget_gb: float | None = STREAM_CHECK_BUDGET_GB
                     ) -> tuple[CostTable, dict]:
    """A cost table for ``models`` on ``profile`` from ``plan_model`` (no GPU), and per-model notes.

    ``shapes``: model -> (height, width, frames) to plan (default :data:`SHAPES`). Slow at full size on a CPU
    (about a minute per shape); the tables this makes for H100 and H200 ship with the package."""
    prof = _profile(profile)
    out, notes = {}, {}
    for m in models:
        out[m], notes[m] = model_costs(m, prof, degrees, (shapes or {}).get(m), tiny=tiny,
                                       check_budget_gb=check_budget_gb)
    return CostTable(out), {"profile": prof.name, "models": notes}


def save_table(table: CostTable, notes: Mapping, path) -> Path:
    """``table`` as JSON with ``notes`` beside it (``CostTable.load`` ignores them)."""
    path = Path(path)
    path.write_text(json.dumps({**table.to_json(), "notes": notes}, indent=1, sort_keys=True) + "\n")
    return path


def shipped_costs(profile: str) -> CostTable:
    """The table generated by ``cfcompile costs --profile <profile>`` that ships with the package."""
    path = DATA / f"costs_{profile}.json"
    if not path.exists():
        have = sorted(p.stem.removeprefix("costs_") for p in DATA.glob("costs_*.json"))
        raise ValueError(f"no shipped cost table for profile {profile!r} (have {have}); make one with "
                         f"'cfcompile costs --profile {profile} --out costs.json' and pass --costs costs.json")
    return CostTable.load(path)


def read_measured(path) -> dict[tuple[str, str], list[tuple[float, int, float]]]:
    """Measured stage times from a CSV with a header naming ``model,stage,tokens,degree,ms`` (any order; other
    columns ignored): (model, stage) -> [(tokens, degree, ms)]. ValueError names the line and what is wrong."""
    import csv

    path = Path(path)
    need = ("model", "stage", "tokens", "degree", "ms")
    with path.open(newline="") as f:
        reader = csv.DictReader(line for line in f if line.strip() and not line.lstrip().startswith("#"))
        missing = [c for c in need if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: the header lacks {missing}; expected columns {','.join(need)} (e.g. "
                             f"'qwen-image,denoise,4096,2,350.0')")
        out: dict[tuple[str, str], list[tuple[float, int, float]]] = {}
        for n, row in enumerate(reader, 2):
            try:
                x, d, ms = float(row["tokens"]), int(row["degree"]), float(row["ms"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{n}: tokens, degree and ms must be numbers (degree an int), got "
                                 f"{row['tokens']!r}, {row['degree']!r}, {row['ms']!r}") from None
            out.setdefault((row["model"], row["stage"]), []).append((x, d, ms))
    if not out:
        raise ValueError(f"{path}: no measured rows")
    return out


def load_costs(profile: str | None = None, costs=None, measured=None, mode: str = "calibrate") -> CostTable:
    """The table a simulation uses: the ``costs`` file, else the shipped table of ``profile``, else the synthetic
    one; then ``measured`` (a CSV, :func:`read_measured`) calibrates it (``mode="calibrate"``: scale each measured
    model/stage by the median measured / predicted) or replaces the measured degrees (``"replace"``: refit)."""
    from .costs import calibrate, refit, synthetic_costs

    if mode not in ("calibrate", "replace"):
        raise ValueError(f"refit mode {mode!r}: use calibrate (scale predictions) or replace (refit measured degrees)")
    table = CostTable.load(costs) if costs else shipped_costs(profile) if profile else synthetic_costs()
    if measured:
        fn = calibrate if mode == "calibrate" else refit
        for (model, stage), rows in sorted(read_measured(measured).items()):
            table = fn(table, model, rows, stage, source=f"measured {Path(measured).name}")
    return table


def gpu_memory(profile: str | None) -> float | None:
    """Memory of one GPU of ``profile`` in GB, None when unknown."""
    return GPU_MEMORY_GB.get(profile) if profile else None


__all__ = ["costs_from_model", "model_costs", "shipped_costs", "save_table", "gpu_memory", "load_costs",
           "read_measured", "SHAPES", "DEGREES",
           "PIPELINES", "GPU_MEMORY_GB"]
