"""Whole diffusers pipelines in one call: `apply` offloads and compiles every model component, `restore` undoes it.

    pipe = FluxPipeline.from_pretrained(..., torch_dtype=torch.bfloat16)          # on the CPU
    cfcompile.apply(pipe, device="cuda", memory_budget="12GiB")   # transformer, text encoders, VAE
    image = pipe(prompt="a cat", generator=torch.Generator().manual_seed(0)).images[0]
    cfcompile.restore(pipe)                                       # the plain pipeline again

Each ``torch.nn.Module`` in ``pipe.components`` (deduplicated, those with parameters) is offloaded with
`cfcompile.offload` and compiled *in place* (``nn.Module.compile``: the pipeline keeps the same objects, so
``pipe(...)`` runs unchanged), all graphs under one `MemoryBudget` when ``memory_budget`` is given:

    component                             compiled                                  why
    a DiT with ``_repeated_blocks``       each repeated block                       regional compilation: one graph per
      (transformer, transformer_2)        (``compile_repeated_blocks``)             block structure, compiles ~9x
                                                                                    faster than the whole model;
                                                                                    ``regional=False`` compiles the
                                                                                    whole model instead
    a VAE (``decode`` + ``decoder``)      ``vae.decoder`` and ``vae.encoder``       pipelines call ``vae.decode``, not
                                                                                    ``forward``; ``decode`` wraps the
                                                                                    decoder in Python (tiling, slicing;
                                                                                    Wan's and Qwen-Image's VAEs loop
                                                                                    over frames with a causal cache),
                                                                                    the decoder holds the compute
    anything else (text encoders, ...)    the whole module                          runs once per request, one graph

Under a ``memory_budget`` the components that run once per request (everything but the denoisers: text encoders,
VAE) stream all their weights (``max_resident_fraction=0``): the budget's resident room goes to the transformer,
called at every denoising step. Graphs under one `MemoryBudget` are planned in call order, so without this the text
encoders, called first, would keep resident what the transformer needs more (measured on FLUX.1 at 12 GiB, H100:
T5-XXL kept 6.9 of its 9.5 GB resident and the transformer streamed nearly all of its weights every step). The
price is one pass of their weights over PCIe per request (T5-XXL: 9.5 GB, ~0.2 s at 47 GB/s). Pass
``max_resident_fraction`` to `apply` to choose for every component yourself.

Weights outside the compiled parts (a DiT's embedders and output layers under regional compilation, a VAE's
``post_quant_conv``) stay offloaded and run eagerly: on a GPU their kernels read them over PCIe (correct; about
0.1 GB per step for Flux.1).

`restore` undoes everything `apply` did, in reverse: compiled wrappers removed, the chunkflow graphs that read the
components' weights released (their device memory freed), weights ordinary tensors again on the device they were on
before (their dtype never changed). A component that was offloaded before `apply` stays offloaded.

`load_pipeline` loads one by name (tiny, or from a folder or the hub cache, never downloading) and `call_arguments`
gives what to call it with, `save_output` writes the image or video (`cfcompile generate` and the examples use
them).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from .config import ChunkFlowConfig, MemoryBudget
from .offload import offload, resolve_device, store_of
from .offload import restore as _restore_weights

log = logging.getLogger(__name__)

_APPLIED = "_cfcompile_applied"   # on the pipeline (or module) given to `apply`: its `_Applied` record
_PART_OF = "_cfcompile_part_of"   # on each component: the name it has in the applied pipeline


@dataclasses.dataclass
class _Part:
    """What `apply` did to one component, for `restore`."""

    name: str
    module: nn.Module
    how: str                    # "regional" | "vae" | "whole" | "eager"
    origin: torch.device | None  # where its parameters were before (None: on several devices)
    offloaded: bool = False     # by `apply` (False: it already was, and stays so)
    compiled: list[nn.Module] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Applied:
    device: torch.device
    budget: MemoryBudget | None
    parts: list[_Part]

    def summary(self) -> dict[str, str]:
        return {p.name: p.how for p in self.parts}


def _components(obj: Any) -> dict[str, nn.Module]:
    """The model components of a pipeline (or ``{"": module}``), each module once, those with parameters."""
    if isinstance(obj, nn.Module):
        return {"": obj}
    comps = getattr(obj, "components", None)
    if not isinstance(comps, dict):
        raise TypeError(f"apply: expected a diffusers pipeline (with .components) or a torch.nn.Module, got "
                        f"{type(obj).__name__}")
    out: dict[str, nn.Module] = {}
    seen: set[int] = set()
    for name, m in comps.items():
        if isinstance(m, nn.Module) and id(m) not in seen and next(m.parameters(), None) is not None:
            seen.add(id(m))
            out[name] = m
    if not out:
        kinds = {k: type(v).__name__ for k, v in comps.items()}
        raise ValueError(f"apply: {type(obj).__name__} has no torch.nn.Module component with parameters (its "
                         f"components: {kinds}); load the pipeline with its models, or pass a module")
    return out


def _how(module: nn.Module, regional: bool) -> str:
    if regional and getattr(module, "_repeated_blocks", None) and hasattr(module, "compile_repeated_blocks"):
        return "regional"
    if callable(getattr(module, "decode", None)) and isinstance(getattr(module, "decoder", None), nn.Module):
        return "vae"
    return "whole"


_DENOISERS = ("transformer", "unet", "prior")   # component names of the models called at every denoising step


def _runs_every_step(name: str, module: nn.Module) -> bool:
    return name.startswith(_DENOISERS) or bool(getattr(module, "_repeated_blocks", None))


def _compiled_inside(module: nn.Module) -> str | None:
    """The name of a submodule that is already compiled (``nn.Module.compile``, ``torch.compile``), if any."""
    if isinstance(module, torch._dynamo.eval_frame.OptimizedModule):
        return "<the module itself: a torch.compile wrapper>"
    for name, m in module.named_modules():
        if getattr(m, "_compiled_call_impl", None) is not None:
            return name or "<the module itself>"
    return None


def _origin(module: nn.Module) -> torch.device | None:
    devices = {p.device for p in module.parameters()}
    return devices.pop() if len(devices) == 1 else None


def _targets(module: nn.Module, how: str) -> list[nn.Module]:
    if how == "regional":
        names = set(module._repeated_blocks)
        return [m for m in module.modules() if type(m).__name__ in names]
    if how == "vae":
        return [m for m in (getattr(module, "encoder", None), module.decoder) if isinstance(m, nn.Module)]
    return [] if how == "eager" else [module]


def apply(pipe_or_module: Any, device: str | torch.device = "cuda", *, regional: bool = True,
          eager: Iterable[str] = (), **options: Any):
    """Offload and compile every model component of a diffusers pipeline (or one module) with chunkflow, in place.

    ``pipe(...)`` then runs as before and gives the same images (same seed); `restore` undoes it. ``options`` are
    the chunkflow options (`ChunkFlowConfig`); a ``memory_budget`` becomes one `MemoryBudget` for all components
    (pass a `MemoryBudget` to share it further). ``regional=False`` compiles DiTs whole instead of block by block.
    ``eager``: names of components to offload but not compile (they run eagerly, their kernels reading the weights
    from host memory: correct, and slower on a GPU); e.g. ``eager=("vae",)`` where compiling a VAE costs more than
    it saves.
    What each component gets is in the module docstring; ``pipe._cfcompile_applied.summary()`` lists it.
    Returns its argument. On any error, whatever was done is undone before the error propagates.
    """
    if getattr(pipe_or_module, _APPLIED, None) is not None:
        raise ValueError(f"apply: this {type(pipe_or_module).__name__} is already applied; call "
                         f"cfcompile.restore(...) first to apply it again with other options")
    if not isinstance(regional, bool):
        raise ValueError(f"apply: regional must be True or False, got {regional!r}")
    try:
        config = ChunkFlowConfig.from_options(options)
    except ValueError as e:
        raise ValueError(f"apply: {e} (apply itself also takes device= and regional=)") from None
    try:
        dev = resolve_device(device)
    except ValueError as e:
        raise ValueError(f"apply: {e}") from None
    comps = _components(pipe_or_module)
    eager = (eager,) if isinstance(eager, str) else tuple(eager)
    unknown = sorted(set(eager) - set(comps))
    if unknown:
        raise ValueError(f"apply: eager={unknown} names no model component; components: {sorted(comps)}")
    for name, m in comps.items():
        if getattr(m, _APPLIED, None) is not None or getattr(m, _PART_OF, None) is not None:
            raise ValueError(f"apply: component {name or type(m).__name__!r} is already under cfcompile.apply (alone "
                             f"or in another pipeline); cfcompile.restore(...) that first")
        inside = _compiled_inside(m)
        if inside is not None:
            raise ValueError(f"apply: component {name or type(m).__name__!r} is already compiled ({inside}); apply "
                             f"compiles it with chunkflow itself: pass the pipeline without torch.compile / "
                             f"compile_repeated_blocks")
        store = store_of(m)
        if store is not None and store.device != dev:
            raise ValueError(f"apply: component {name or type(m).__name__!r} is offloaded for {store.device}, not "
                             f"{dev}; cfcompile.restore(component) first, or apply with device={str(store.device)!r}")

    budget = config.memory_budget
    if budget is not None and not isinstance(budget, MemoryBudget):
        budget = MemoryBudget(budget)
    compile_options = dict(options)
    if budget is not None:
        compile_options["memory_budget"] = budget

    record = _Applied(dev, budget, [])
    try:
        for name, m in comps.items():
            part = _Part(name or type(m).__name__, m, "eager" if name in eager else _how(m, regional), _origin(m))
            record.parts.append(part)
            if store_of(m) is None:
                offload(m, dev)
                part.offloaded = True
            object.__setattr__(m, _PART_OF, part.name)
            part_options = compile_options
            runs_once = name and not _runs_every_step(name, m)   # ("": a single module given to apply)
            if budget is not None and "max_resident_fraction" not in options and runs_once:
                part_options = {**compile_options, "max_resident_fraction": 0.0}
            for target in _targets(m, part.how):
                target.compile(backend="chunkflow", options=part_options)
                part.compiled.append(target)
    except BaseException:
        _undo(record)
        log.warning("apply: failed on component %s of %s; everything done before was undone", record.parts[-1].name,
                    type(pipe_or_module).__name__)
        raise
    object.__setattr__(pipe_or_module, _APPLIED, record)
    log.info("apply: %s on %s%s: %s", type(pipe_or_module).__name__, dev,
             f" under {budget!r}" if budget is not None else "",
             ", ".join(f"{p.name} ({p.how}, {len(p.compiled)} compiled)" for p in record.parts))
    return pipe_or_module


def _undo(record: _Applied) -> None:
    """Undo ``record``'s parts, last first: compiled wrappers, device memory of their graphs, offloading."""
    for part in reversed(record.parts):
        for target in part.compiled:
            target._compiled_call_impl = None
        part.compiled.clear()
    from .compiler.backend import release_graphs   # the device memory of the graphs that read the weights

    released = release_graphs(reading=[g for p in record.parts if store_of(p.module) is not None
                                       for g in store_of(p.module).groups])
    for part in reversed(record.parts):
        part.module.__dict__.pop(_PART_OF, None)
        if not part.offloaded:
            continue
        if store_of(part.module) is None:   # restored on its own meanwhile
            log.warning("restore: component %s was no longer offloaded", part.name)
        else:
            _restore_weights(part.module, device=part.origin)
        if part.origin is not None:
            part.module.to(part.origin)   # its buffers
        part.offloaded = False
    log.info("restore: %d components back to plain modules, %d chunkflow graphs released", len(record.parts),
             released)


def restore(obj: Any) -> None:
    """Undo `apply` (a pipeline or module given to it) or `offload` (a module).

    After `apply`: compiled wrappers removed, the chunkflow graphs reading the weights released, the weights ordinary
    tensors on the device they were on before `apply` (same dtype). After `offload`: the weights ordinary tensors on
    the store's device."""
    record: _Applied | None = getattr(obj, _APPLIED, None)
    if record is not None:
        _undo(record)
        obj.__dict__.pop(_APPLIED, None)
        return
    part_of = getattr(obj, _PART_OF, None)
    if part_of is not None:
        raise ValueError(f"restore: this module is component {part_of!r} of a pipeline given to cfcompile.apply; "
                         f"call cfcompile.restore(pipe) to undo all of it")
    if isinstance(obj, nn.Module):
        _restore_weights(obj)
        return
    raise ValueError(f"restore: this {type(obj).__name__} was not given to cfcompile.apply (nor is it a module "
                     f"offloaded with cfcompile.offload): nothing to restore")


# Loading ---------------------------------------------------------------------------------------------------------
# What `cfcompile generate` and the examples share: a pipeline by name (tiny, or from a local folder or the hub
# cache, never downloaded) and the arguments to call it with.

#: The hub repository each pipeline name loads by default.
REPOS = {"flux": "black-forest-labs/FLUX.1-dev", "qwen-image": "Qwen/Qwen-Image",
         "wan": "Wan-AI/Wan2.1-T2V-14B-Diffusers", "wan2.2": "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
         "sd3": "stabilityai/stable-diffusion-3.5-large"}

#: Call arguments of the released pipelines (their model cards' sizes, steps and guidance).
CALLS: dict[str, dict[str, Any]] = {
    "flux": dict(height=1024, width=1024, num_inference_steps=28, guidance_scale=3.5),
    "qwen-image": dict(height=1024, width=1024, num_inference_steps=50, true_cfg_scale=4.0),
    "wan": dict(height=480, width=832, num_frames=81, num_inference_steps=50, guidance_scale=5.0),
    "wan2.2": dict(height=480, width=832, num_frames=81, num_inference_steps=50, guidance_scale=4.0,
                   guidance_scale_2=3.0),
    "sd3": dict(height=1024, width=1024, num_inference_steps=28, guidance_scale=3.5),
}

VIDEO = ("wan", "wan2.2")
_CLASSES = {"FluxPipeline": "flux", "QwenImagePipeline": "qwen-image", "WanPipeline": "wan",
            "StableDiffusion3Pipeline": "sd3"}


def pipeline_name(pipe: Any) -> str | None:
    """``"flux"``, ``"qwen-image"``, ``"wan"``, ``"wan2.2"`` (two experts) or ``"sd3"``, for those pipelines, else
    None."""
    name = _CLASSES.get(type(pipe).__name__)
    if name == "wan" and getattr(pipe, "transformer_2", None) is not None:
        return "wan2.2"
    return name


def _is_repo_id(model: str) -> bool:
    owner, _, repo = model.partition("/")
    return bool(owner and repo) and "/" not in repo and not model.startswith((".", "~"))


def load_pipeline(name: str | None = None, model: str | None = None, *, dtype: torch.dtype = torch.bfloat16,
                  tiny: bool = False) -> tuple[Any, str]:
    """A pipeline and its name (`pipeline_name`), on the CPU (`apply` moves what is needed).

    ``tiny``: `tiny_pipelines.tiny_pipeline(name)`, random weights. Otherwise ``model`` (a local folder, or a hub
    repository id; default ``REPOS[name]``) with ``from_pretrained(..., local_files_only=True)``: nothing is
    downloaded, and a model that is not there raises `FileNotFoundError` saying what to do. Wan's VAE is kept in
    float32 (as Wan's pipelines run it). Raises ValueError for a name or pipeline class it does not know."""
    from .tiny_pipelines import PIPELINES, tiny_pipeline

    if name is not None and name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}")
    if tiny:
        if name is None:
            raise ValueError(f"a tiny pipeline needs a name: one of {', '.join(PIPELINES)}")
        return tiny_pipeline(name, dtype), name
    if model is None:
        if name is None:
            raise ValueError("load_pipeline: give a pipeline name or a model (a folder or hub repository id)")
        model = REPOS[name]
    import diffusers

    path = Path(model).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(f"{path} has no model_index.json: it is not a diffusers pipeline folder (give the "
                                    f"folder that save_pretrained wrote, or that `hf download REPO --local-dir DIR` "
                                    f"filled)")
        source, hub = str(path), False
    elif _is_repo_id(model):
        source, hub = model, True
    else:
        raise FileNotFoundError(f"no folder {path}: give a folder with a diffusers pipeline (model_index.json), or a "
                                f"hub repository id such as {REPOS['flux']}")
    try:
        pipe = diffusers.DiffusionPipeline.from_pretrained(source, dtype=dtype, local_files_only=True)
    except OSError as e:   # huggingface_hub's LocalEntryNotFoundError, a missing file of the folder
        if hub:
            from huggingface_hub import constants

            raise FileNotFoundError(f"{model} is not in the hub cache ({constants.HF_HUB_CACHE}) and nothing is "
                                    f"downloaded here: download it first (`hf download {model}`), or give a local "
                                    f"folder") from e
        raise FileNotFoundError(f"{path}: {e}") from e
    found = pipeline_name(pipe)
    if found is None:
        raise ValueError(f"{model} is a {type(pipe).__name__}; known are {', '.join(_CLASSES)}")
    if found in VIDEO and getattr(pipe, "vae", None) is not None:
        pipe.vae.to(torch.float32)
    return pipe, found


def call_arguments(name: str, *, tiny: bool = False, height: int | None = None, width: int | None = None,
                   frames: int | None = None, steps: int | None = None, guidance: float | None = None) -> dict:
    """``pipe(prompt=..., **call_arguments(name, ...))``: `CALLS` (`TINY_CALLS` with ``tiny``), with what is given
    in place of the defaults. ``guidance`` is Qwen-Image's ``true_cfg_scale`` (with a blank negative prompt, as its
    model card calls it) and both of Wan 2.2's guidance scales."""
    from .tiny_pipelines import TINY_CALLS

    call = dict((TINY_CALLS if tiny else CALLS)[name])
    given = dict(height=height, width=width, num_frames=frames, num_inference_steps=steps)
    call.update({k: v for k, v in given.items() if v is not None and (k != "num_frames" or name in VIDEO)})
    if guidance is not None:
        for key in ("guidance_scale", "true_cfg_scale", "guidance_scale_2"):
            if key in call or (key == "guidance_scale_2" and name == "wan2.2"):
                call[key] = guidance
    if call.get("true_cfg_scale", 1.0) > 1.0:
        call.setdefault("negative_prompt", " ")
    return call


def save_output(result: Any, out: str | Path, fps: int = 16) -> Path:
    """Write a pipeline's ``output_type="np"`` result: an image (H, W, 3) as ``out`` (.png, .jpg), frames (F, H, W, 3)
    as a video: .mp4 through imageio-ffmpeg, or an animated GIF (for .gif, and in place of an .mp4 when
    imageio-ffmpeg is not installed: then the path returned ends in .gif). Returns the path written."""
    import numpy as np
    from PIL import Image

    out = Path(out)
    frames = [Image.fromarray((f * 255).round().clip(0, 255).astype(np.uint8)) for f in (result if result.ndim == 4
                                                                                           else [result])]
    out.parent.mkdir(parents=True, exist_ok=True)
    if result.ndim == 3:
        frames[0].save(out)
        return out
    if out.suffix.lower() == ".mp4":
        try:
            import imageio  # noqa: F401
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            out = out.with_suffix(".gif")
        else:
            from diffusers.utils import export_to_video

            export_to_video(frames, str(out), fps=fps)
            return out
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=1000 // fps, loop=0)
    return out
