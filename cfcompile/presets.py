"""Named diffusers DiT presets: the real transformer configs of Flux.1-dev, Qwen-Image, Wan 2.1 T2V 14B and
SD3.5-large, a tiny config of each that runs on a CPU, and the forward inputs their pipelines pass for a workload.

    p = get_preset("flux")
    model = p.build("meta")                                     # 11.9B parameters, no memory
    inputs = p.inputs(model.config, Workload(height=1024, width=1024), "meta", torch.bfloat16)
    model(**inputs)[0].shape                                    # (1, 4096, 64): 1024 px / 8 (VAE) / 2 (packing)

Inputs follow the installed diffusers pipelines (diffusers 0.42): the same latent layout, position ids, timestep
scale and dtypes, random values from a CPU generator seeded 0. Used by the GPU benchmarks and the planning CLI.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from typing import Any, Callable, Mapping

import torch
from torch import nn

#: Spatial compression of the VAE of all four families (pixels per latent pixel).
VAE_SCALE = 8
#: Temporal compression of the Wan VAE: frame 0, then one latent frame per 4 frames (so frames = 4k + 1).
WAN_TEMPORAL_SCALE = 4


@dataclasses.dataclass(frozen=True)
class Workload:
    """One transformer call: what the pipeline generates, per denoising step."""

    height: int = 1024
    """Image height in pixels; the preset checks it is a multiple of VAE factor x patch size."""

    width: int = 1024
    """Image width in pixels; same rule as ``height``."""

    frames: int = 1
    """Video frames in pixel space: 4k + 1 for Wan (its VAE keeps frame 0 and compresses 4 frames to 1), 1 for
    image models."""

    batch: int = 1
    """Samples per call (2 when a pipeline batches the classifier-free-guidance pair)."""

    text_tokens: int | None = None
    """Text encoder tokens; None = the preset's default (the pipeline's ``max_sequence_length``)."""

    sp_degree: int = 1
    """Sequence-parallel ranks the sequence is split over (planning). ``inputs()`` builds the full sequence."""

    def __post_init__(self):
        for f in ("height", "width", "frames", "batch", "sp_degree"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"Workload.{f}: expected a positive int, got {v!r}")
        t = self.text_tokens
        if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t <= 0):
            raise ValueError(f"Workload.text_tokens: expected a positive int or None (the preset's default), got {t!r}")


@dataclasses.dataclass(frozen=True)
class _Grid:
    """The latent a workload gives, and the transformer tokens per sample after patching."""

    latent: tuple[int, ...]  # per sample: (L, C) packed tokens, (C, H, W) or (C, F, H, W) latent pixels
    tokens: int  # per sample, after patching
    hw: tuple[int, int]  # patched height and width (the rope grid)


# ---------------------------------------------------------------------------------------------------------------
# Layouts: how each diffusers class turns a workload into a latent and into forward kwargs. Keyed by class name.
# ---------------------------------------------------------------------------------------------------------------

def _spatial(name: str, wl: Workload, patch: int, vae: int = VAE_SCALE) -> tuple[int, int]:
    """Latent height/width in tokens: pixels / VAE factor / patch, which must divide evenly."""
    step = vae * patch
    for f in ("height", "width"):
        v = getattr(wl, f)
        if v % step:
            raise ValueError(
                f"{name}: {f}={v} is not a multiple of {step} (VAE factor {vae} x patch {patch}); "
                f"use e.g. {f}={max(step, v // step * step)}")
    return wl.height // step, wl.width // step


def _image_only(name: str, wl: Workload) -> None:
    if wl.frames != 1:
        raise ValueError(f"{name} is an image model: frames must be 1, got frames={wl.frames}")


def _packed_grid(name: str, cfg: Mapping, wl: Workload) -> _Grid:
    # Flux and Qwen-Image pipelines pack 2x2 latent pixels into one token of 4 x 16 = 64 channels (in_channels).
    _image_only(name, wl)
    h, w = _spatial(name, wl, 2)
    return _Grid((h * w, cfg["in_channels"]), h * w, (h, w))


def _sd3_grid(name: str, cfg: Mapping, wl: Workload) -> _Grid:
    _image_only(name, wl)
    p = cfg["patch_size"]
    h, w = _spatial(name, wl, p)
    m = cfg["pos_embed_max_size"]
    if max(h, w) > m:  # the positional embedding is cropped from a pos_embed_max_size^2 grid
        raise ValueError(f"{name}: {wl.height}x{wl.width} px is {h}x{w} patches, more than pos_embed_max_size={m} "
                         f"per side; at most {m * VAE_SCALE * p} px")
    return _Grid((cfg["in_channels"], h * p, w * p), h * w, (h, w))


def _wan_grid(name: str, cfg: Mapping, wl: Workload) -> _Grid:
    if (wl.frames - 1) % WAN_TEMPORAL_SCALE:
        k = (wl.frames - 1) // WAN_TEMPORAL_SCALE
        raise ValueError(f"{name}: frames must be 4k + 1 (1, 5, ..., 81; the VAE keeps frame 0 and compresses 4 "
                         f"frames into one), got frames={wl.frames}; use {4 * k + 1} or {4 * k + 5}")
    pt, ph, pw = cfg["patch_size"]
    if ph != pw:
        raise ValueError(f"{name}: patch_size {tuple(cfg['patch_size'])} has different height and width patches")
    f = 1 + (wl.frames - 1) // WAN_TEMPORAL_SCALE
    if f % pt:
        raise ValueError(f"{name}: {f} latent frames are not a multiple of the temporal patch {pt}")
    h, w = _spatial(name, wl, ph)
    return _Grid((cfg["in_channels"], f, h * ph, w * pw), (f // pt) * h * w, (h, w))


def _flux_inputs(cfg, wl, grid, T, rand, device, dtype):
    B, (L, C), (h, w) = wl.batch, grid.latent, grid.hw
    # FluxPipeline._prepare_latent_image_ids: (row, col) in channels 1 and 2, unbatched (L, 3); txt_ids are zeros.
    ids = torch.zeros(h, w, 3)
    ids[..., 1] = torch.arange(h)[:, None]
    ids[..., 2] = torch.arange(w)[None, :]
    out = dict(hidden_states=rand(B, L, C), encoder_hidden_states=rand(B, T, cfg["joint_attention_dim"]),
               pooled_projections=rand(B, cfg["pooled_projection_dim"]),
               timestep=torch.full((B,), 0.5, device=device, dtype=dtype),  # the pipeline passes t / 1000
               img_ids=ids.reshape(L, 3).to(device, dtype), txt_ids=torch.zeros(T, 3, device=device, dtype=dtype))
    if cfg["guidance_embeds"]:
        out["guidance"] = torch.full((B,), 3.5, device=device, dtype=torch.float32)
    return out


def _qwen_inputs(cfg, wl, grid, T, rand, device, dtype):
    B, (L, C), (h, w) = wl.batch, grid.latent, grid.hw
    # The rope is built from img_shapes (one [(frames, h, w)] list per sample, as QwenImagePipeline passes them);
    # the text rope length is encoder_hidden_states.shape[1] (diffusers 0.42 has no txt_seq_lens). The pipeline
    # passes encoder_hidden_states_mask=None when every prompt token is valid (padding-free batch of one), which
    # keeps attention mask-free; so do we.
    return dict(hidden_states=rand(B, L, C), encoder_hidden_states=rand(B, T, cfg["joint_attention_dim"]),
                encoder_hidden_states_mask=None, timestep=torch.full((B,), 0.5, device=device, dtype=dtype),
                img_shapes=[[(1, h, w)]] * B)


def _wan_inputs(cfg, wl, grid, T, rand, device, dtype):
    B = wl.batch
    # WanPipeline: timestep = t.expand(B) in float32 (scheduler timesteps, 0..1000); text padded to 512 tokens.
    return dict(hidden_states=rand(B, *grid.latent), encoder_hidden_states=rand(B, T, cfg["text_dim"]),
                timestep=torch.full((B,), 500.0, device=device, dtype=torch.float32))


def _sd3_inputs(cfg, wl, grid, T, rand, device, dtype):
    B = wl.batch
    # StableDiffusion3Pipeline: 77 CLIP + 256 T5 tokens, pooled CLIP-L + CLIP-G (2048), float32 timestep 0..1000.
    return dict(hidden_states=rand(B, *grid.latent), encoder_hidden_states=rand(B, T, cfg["joint_attention_dim"]),
                pooled_projections=rand(B, cfg["pooled_projection_dim"]),
                timestep=torch.full((B,), 500.0, device=device, dtype=torch.float32))


# Layouts of DiTs that no preset uses: benchmarks/heldout.py builds held-out models from them (the cost model was
# not developed on these), to validate predictions outside the presets.

def _latent_frames(name: str, wl: Workload, temporal: int = 4) -> int:
    """Latent frames of a causal video VAE that keeps frame 0 and compresses ``temporal`` frames into one."""
    if (wl.frames - 1) % temporal:
        k = (wl.frames - 1) // temporal
        raise ValueError(f"{name}: frames must be {temporal}k + 1 (the VAE keeps frame 0 and compresses {temporal} "
                         f"frames into one), got frames={wl.frames}; use {temporal * k + 1} or "
                         f"{temporal * (k + 1) + 1}")
    return 1 + (wl.frames - 1) // temporal


def _hunyuan_video_grid(name: str, cfg: Mapping, wl: Workload) -> _Grid:
    # HunyuanVideoPipeline.prepare_latents: (C, (frames - 1) // 4 + 1, H / 8, W / 8); 1x2x2 patches.
    p, pt = cfg["patch_size"], cfg["patch_size_t"]
    f = _latent_frames(name, wl)
    if f % pt:
        raise ValueError(f"{name}: {f} latent frames are not a multiple of the temporal patch {pt}")
    h, w = _spatial(name, wl, p)
    return _Grid((cfg["in_channels"], f, h * p, w * p), (f // pt) * h * w, (h, w))


def _cogvideox_grid(name: str, cfg: Mapping, wl: Workload) -> _Grid:
    # CogVideoXPipeline.prepare_latents: frames before channels, (F, C, H / 8, W / 8); CogVideoX 1.0 (patch_size_t
    # None) patches 2x2 per frame, 1.5 pads the latent frames to a multiple of patch_size_t (not done here).
    p, pt = cfg["patch_size"], cfg["patch_size_t"] or 1
    f = _latent_frames(name, wl)
    if f % pt:
        raise ValueError(f"{name}: {f} latent frames are not a multiple of the temporal patch {pt}")
    h, w = _spatial(name, wl, p)
    return _Grid((f, cfg["in_channels"], h * p, w * p), (f // pt) * h * w, (h, w))


def _sana_grid(name: str, cfg: Mapping, wl: Workload) -> _Grid:
    # SanaPipeline: the DC-AE compresses 32x (32 latent channels), patch_size 1.
    _image_only(name, wl)
    p = cfg["patch_size"]
    h, w = _spatial(name, wl, p, vae=32)
    return _Grid((cfg["in_channels"], h * p, w * p), h * w, (h, w))


def _hunyuan_video_inputs(cfg, wl, grid, T, rand, device, dtype):
    B = wl.batch
    # HunyuanVideoPipeline (guidance-distilled, no true CFG by default): Llama text features padded to 256 tokens
    # with their mask (all valid here), pooled CLIP-L (768), float32 timestep 0..1000, guidance = 6.0 x 1000 in the
    # transformer's dtype.
    return dict(hidden_states=rand(B, *grid.latent), timestep=torch.full((B,), 500.0, device=device,
                                                                          dtype=torch.float32),
                encoder_hidden_states=rand(B, T, cfg["text_embed_dim"]),
                encoder_attention_mask=torch.ones(B, T, device=device, dtype=dtype),
                pooled_projections=rand(B, cfg["pooled_projection_dim"]),
                guidance=torch.full((B,), 6000.0, device=device, dtype=dtype))


def _resize_crop_region_for_grid(src, tgt_width, tgt_height):
    # diffusers.pipelines.cogvideo.pipeline_cogvideox.get_resize_crop_region_for_grid (that module imports
    # transformers' T5)
    tw, th = tgt_width, tgt_height
    h, w = src
    if h / w > th / tw:
        resize_height, resize_width = th, int(round(th / h * w))
    else:
        resize_width, resize_height = tw, int(round(tw / w * h))
    crop_top = int(round((th - resize_height) / 2.0))
    crop_left = int(round((tw - resize_width) / 2.0))
    return (crop_top, crop_left), (crop_top + resize_height, crop_left + resize_width)


def _cogvideox_inputs(cfg, wl, grid, T, rand, device, dtype):
    B, (h, w) = wl.batch, grid.hw
    # CogVideoXPipeline: T5 features padded to 226 tokens, integer timestep (DDIM, 0..999), and for the 5B model
    # (use_rotary_positional_embeddings) the 3D rope the pipeline builds (_prepare_rotary_positional_embeddings).
    out = dict(hidden_states=rand(B, *grid.latent), encoder_hidden_states=rand(B, T, cfg["text_embed_dim"]),
               timestep=torch.full((B,), 500, device=device, dtype=torch.int64))
    if cfg["use_rotary_positional_embeddings"]:
        from diffusers.models.embeddings import get_3d_rotary_pos_embed

        p, pt = cfg["patch_size"], cfg["patch_size_t"]
        base_w, base_h = cfg["sample_width"] // p, cfg["sample_height"] // p
        f = grid.latent[0]
        rope_device = "cpu" if device.type == "meta" else device  # small (tokens x head_dim): built for real
        if pt is None:
            cos, sin = get_3d_rotary_pos_embed(
                embed_dim=cfg["attention_head_dim"], crops_coords=_resize_crop_region_for_grid((h, w), base_w, base_h),
                grid_size=(h, w), temporal_size=f, device=rope_device)
        else:
            cos, sin = get_3d_rotary_pos_embed(
                embed_dim=cfg["attention_head_dim"], crops_coords=None, grid_size=(h, w),
                temporal_size=(f + pt - 1) // pt, grid_type="slice", max_size=(base_h, base_w), device=rope_device)
        out["image_rotary_emb"] = (cos.to(device), sin.to(device))
    return out


def _sana_inputs(cfg, wl, grid, T, rand, device, dtype):
    B = wl.batch
    # SanaPipeline: Gemma-2 features, 300 tokens kept (select_index) with the tokenizer's int64 mask (all valid
    # here), float32 flow-matching timestep 0..1000 x timestep_scale.
    return dict(hidden_states=rand(B, *grid.latent), encoder_hidden_states=rand(B, T, cfg["caption_channels"]),
                encoder_attention_mask=torch.ones(B, T, device=device, dtype=torch.int64),
                timestep=torch.full((B,), 500.0 * cfg["timestep_scale"], device=device, dtype=torch.float32))


@dataclasses.dataclass(frozen=True)
class _Layout:
    grid: Callable[[str, Mapping, Workload], _Grid]
    inputs: Callable[..., dict]
    sp_splits_text: bool | None
    """Whether diffusers' context-parallel plan (``_cp_plan``) shards the text sequence too; None = no plan."""


_LAYOUTS = {
    "FluxTransformer2DModel": _Layout(_packed_grid, _flux_inputs, sp_splits_text=True),
    "QwenImageTransformer2DModel": _Layout(_packed_grid, _qwen_inputs, sp_splits_text=True),
    "WanTransformer3DModel": _Layout(_wan_grid, _wan_inputs, sp_splits_text=False),
    "SD3Transformer2DModel": _Layout(_sd3_grid, _sd3_inputs, sp_splits_text=None),
    # held-out models (benchmarks/heldout.py), no preset
    "HunyuanVideoTransformer3DModel": _Layout(_hunyuan_video_grid, _hunyuan_video_inputs, sp_splits_text=None),
    "CogVideoXTransformer3DModel": _Layout(_cogvideox_grid, _cogvideox_inputs, sp_splits_text=None),
    "SanaTransformer2DModel": _Layout(_sana_grid, _sana_inputs, sp_splits_text=None),
}


@dataclasses.dataclass(frozen=True)
class Preset:
    """A diffusers transformer class, its real config and a tiny one, and how a workload becomes its inputs."""

    name: str
    cls_name: str
    """The diffusers class, e.g. ``"FluxTransformer2DModel"``."""

    config: Mapping[str, Any] = dataclasses.field(hash=False)
    """Constructor kwargs of the real model (the released checkpoint's ``transformer/config.json``)."""

    tiny_config: Mapping[str, Any] = dataclasses.field(hash=False)
    """Same blocks and dataflow, a few blocks and small widths: a CPU forward takes well under a second."""

    default_text_tokens: int
    """Text tokens when the workload leaves them unset: what the pipeline pads or truncates to."""

    description: str

    def __post_init__(self):
        if self.cls_name not in _LAYOUTS:
            raise ValueError(f"Preset {self.name!r}: no input layout for {self.cls_name!r}; known: {sorted(_LAYOUTS)}")
        if isinstance(self.default_text_tokens, bool) or not isinstance(self.default_text_tokens, int) \
                or self.default_text_tokens <= 0:
            raise ValueError(f"Preset {self.name!r}: default_text_tokens must be a positive int")
        # Read-only views: presets are shared module constants.
        object.__setattr__(self, "config", types.MappingProxyType(dict(self.config)))
        object.__setattr__(self, "tiny_config", types.MappingProxyType(dict(self.tiny_config)))

    def model_cls(self) -> type[nn.Module]:
        try:
            import diffusers
        except ImportError as e:
            raise ImportError(f"preset {self.name!r} needs diffusers: pip install 'cfcompile[diffusers]'") from e
        return getattr(diffusers, self.cls_name)

    def build(self, device="meta", dtype: torch.dtype = torch.bfloat16, tiny: bool = False,
              **overrides: Any) -> nn.Module:
        """The model in eval mode without gradients, random weights (seed 0), constructed directly on ``device``:
        on ``"meta"`` nothing is allocated, on ``"cuda"`` the weights never pass through host memory.
        ``overrides``: config entries to change (e.g. ``num_attention_heads=4`` for a tiny model at Ulysses 4)."""
        device = torch.device(device)
        if device.type != "meta":
            torch.manual_seed(0)
        old = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # parameters are created in dtype (no fp32 copy on the way)
        try:
            with device:
                model = self.model_cls()(**{**(self.tiny_config if tiny else self.config), **overrides})
        finally:
            torch.set_default_dtype(old)
        return model.eval().requires_grad_(False)

    def resolve(self, model_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``model_config`` (``model.config``, a preset config or None = the real one) with the class defaults."""
        cfg = {k: p.default for k, p in inspect.signature(self.model_cls().__init__).parameters.items()
               if p.default is not inspect.Parameter.empty}
        cfg.update(self.config if model_config is None else model_config)
        return cfg

    def text_tokens(self, workload: Workload) -> int:
        return workload.text_tokens if workload.text_tokens is not None else self.default_text_tokens

    def check(self, workload: Workload, model_config: Mapping[str, Any] | None = None) -> _Grid:
        """Validate ``workload`` for this model; the latent grid it gives. Raises ValueError naming the problem."""
        cfg = self.resolve(model_config)
        layout = _LAYOUTS[self.cls_name]
        grid = layout.grid(self.name, cfg, workload)
        sp = workload.sp_degree
        if sp > 1:
            if layout.sp_splits_text is None:
                raise ValueError(f"{self.name}: sp_degree={sp}, but diffusers' {self.cls_name} has no context-"
                                 f"parallel plan; use sp_degree=1")
            # Ulysses trades the sequence split for a head split in attention: the degree must divide the heads
            # (diffusers would fail deep in a reshape)
            heads = cfg.get("num_attention_heads")
            if isinstance(heads, int) and heads % sp:
                raise ValueError(f"{self.name}: Ulysses at sp_degree={sp} splits the {heads} attention heads over the "
                                 f"ranks; pick a degree that divides {heads}")
            # diffusers' context parallelism shards each split sequence evenly (it asserts divisibility).
            if grid.tokens % sp:
                raise ValueError(f"{self.name}: {grid.tokens} image tokens do not split evenly over "
                                 f"sp_degree={sp}; change height/width or sp_degree")
            t = self.text_tokens(workload)
            if layout.sp_splits_text and t % sp:
                raise ValueError(f"{self.name}: {t} text tokens do not split evenly over sp_degree={sp} "
                                 f"(diffusers shards the text sequence too); change text_tokens or sp_degree")
        return grid

    def tokens(self, workload: Workload) -> int:
        """Image/video tokens per sample the transformer sees, the whole sequence (not divided by sp_degree)."""
        return self.check(workload).tokens

    def inputs(self, model_config: Mapping[str, Any] | None, workload: Workload, device="cpu",
               dtype: torch.dtype = torch.bfloat16) -> dict:
        """Forward kwargs (``return_dict=False``) for ``workload``, shaped from ``model_config`` (so tiny configs
        get matching small inputs). Deterministic: values come from a CPU generator seeded 0, then move."""
        cfg = self.resolve(model_config)
        grid = self.check(workload, cfg)
        device = torch.device(device)
        g = torch.Generator(device="cpu").manual_seed(0)

        def rand(*shape):
            if device.type == "meta":  # shapes only: no host memory for a full-size latent
                return torch.empty(shape, device=device, dtype=dtype)
            return torch.randn(shape, generator=g).to(device, dtype)

        out = _LAYOUTS[self.cls_name].inputs(cfg, workload, grid, self.text_tokens(workload), rand, device, dtype)
        out["return_dict"] = False
        return out


# Tiny configs: same block types as the real ones, 2-3 blocks, inner dim 32; the constraints in comments are the
# diffusers classes' (see tests/test_models.py). Patching matches the real configs so tokens() holds for both.
PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(
        name="flux", cls_name="FluxTransformer2DModel",
        config=dict(guidance_embeds=True),  # the rest are the class defaults: Flux.1-dev
        # rope axes sum to the head dim; in_channels 16 = 4 latent channels packed 2x2.
        tiny_config=dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=2, attention_head_dim=16,
                         num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                         guidance_embeds=True, axes_dims_rope=(4, 6, 6)),
        default_text_tokens=512,  # T5 max_sequence_length of FluxPipeline, padded
        description="Flux.1-dev transformer, 12B: 19 double- + 38 single-stream blocks, guidance-distilled"),
    Preset(
        name="qwen-image", cls_name="QwenImageTransformer2DModel",
        config=dict(),  # the class defaults are Qwen-Image
        # axes_dims_rope sums to the head dim, each part even; out 4 x 2x2 patch = in_channels 16.
        tiny_config=dict(patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16,
                         num_attention_heads=2, joint_attention_dim=16, axes_dims_rope=(8, 4, 4)),
        default_text_tokens=512,  # max_sequence_length; real prompts are shorter (the pipeline does not pad)
        description="Qwen-Image transformer, 20B: 60 MMDiT blocks, Qwen2.5-VL text features (3584)"),
    Preset(
        name="wan", cls_name="WanTransformer3DModel",
        config=dict(),  # the class defaults are Wan 2.1 T2V 14B
        # rope splits head_dim 12 into even t/h/w parts; rope_max_seq_len covers frames and patched sides.
        tiny_config=dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4,
                         out_channels=4, text_dim=16, freq_dim=32, ffn_dim=64, num_layers=2, cross_attn_norm=True,
                         qk_norm="rms_norm_across_heads", rope_max_seq_len=32),
        default_text_tokens=512,  # UMT5 max_sequence_length of WanPipeline, padded
        description="Wan 2.1 T2V transformer, 14B: 40 blocks of self- + cross-attention over video tokens"),
    Preset(
        name="sd3", cls_name="SD3Transformer2DModel",
        # stabilityai/stable-diffusion-3.5-large transformer/config.json
        config=dict(sample_size=128, patch_size=2, in_channels=16, num_layers=38, attention_head_dim=64,
                    num_attention_heads=38, joint_attention_dim=4096, caption_projection_dim=2432,
                    pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=192, qk_norm="rms_norm"),
        # caption_projection_dim = inner dim; pos_embed_max_size 16 allows up to 256 px.
        tiny_config=dict(sample_size=8, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=16,
                         num_attention_heads=2, joint_attention_dim=32, caption_projection_dim=32,
                         pooled_projection_dim=32, out_channels=4, pos_embed_max_size=16, qk_norm="rms_norm"),
        default_text_tokens=333,  # 77 CLIP + 256 T5 tokens (max_sequence_length) of StableDiffusion3Pipeline
        description="SD3.5-large transformer, 8B: 38 MMDiT blocks with QK RMSNorm"),
)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
