"""Full-size diffusers pipelines with random weights, built from their released configs: no download.

    pipe = full_pipeline("flux")          # FLUX.1-dev's layout: CLIP-L, T5-XXL, the 12B DiT, its VAE (bf16)
    pipe = full_pipeline("wan")           # Wan 2.1 T2V 14B: UMT5-XXL, the 14B DiT, Wan's VAE

For benchmarks and ``cfcompile generate --random-weights``: the sizes, kernels, transfers and memory of the real
pipelines, on a machine that has neither the weights nor a network. The tokenizers are the tiny ones of
`cfcompile.tiny_pipelines` (their ids lie inside the real vocabularies; what a prompt says does not matter for random
weights).

Building a 17B-parameter pipeline the ordinary way initialises every weight twice on the CPU (minutes). Here the
parameters are created on the meta device (buffers stay real: rotary tables and position ids are computed as usual)
and then filled once, on ``fill_device`` (a GPU fills 34 GB in seconds), with N(0, 1/fan_in) for matrices, ones for
norm scales and zeros for biases: activations keep their scale through 57 blocks, so outputs stay finite in bf16.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .tiny_pipelines import clip_tokenizer, t5_tokenizer

FULL_PIPELINES = ("flux", "wan")


@contextlib.contextmanager
def parameters_on_meta():
    """Every parameter registered inside goes to the meta device (as accelerate's ``init_empty_weights``)."""
    register = nn.Module.register_parameter

    def on_meta(module, name, param):
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=False)
        register(module, name, param)

    nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def _fill(value: torch.Tensor, name: str) -> torch.Tensor:
    if value.ndim >= 2:
        fan_in = value[0].numel()
        return value.normal_(0.0, fan_in ** -0.5)
    return value.zero_() if name.endswith("bias") else value.fill_(1.0)


def materialize(module: nn.Module, dtype: torch.dtype, fill_device: torch.device | str | None = None) -> nn.Module:
    """Give every meta parameter of ``module`` CPU memory of ``dtype``, filled as the module docstring says (tied
    parameters stay tied); floating buffers are cast to ``dtype``."""
    fill_device = torch.device(fill_device or "cpu")
    made: dict[int, nn.Parameter] = {}
    for sub in module.modules():
        for name, p in list(sub._parameters.items()):
            if p is None or p.device.type != "meta":
                continue
            if id(p) not in made:
                value = _fill(torch.empty(p.shape, dtype=dtype, device=fill_device), name)
                made[id(p)] = nn.Parameter(value.cpu(), requires_grad=False)
            sub._parameters[name] = made[id(p)]
    return module.to(dtype).eval().requires_grad_(False)


def _flux(dtype, fill_device):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    with parameters_on_meta():   # black-forest-labs/FLUX.1-dev's component configs
        transformer = FluxTransformer2DModel(guidance_embeds=True)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
            max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768, bos_token_id=0,
            eos_token_id=1, pad_token_id=1))
        text_encoder_2 = T5EncoderModel(T5Config(
            vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
            relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
            dropout_rate=0.0, is_encoder_decoder=False))
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                            layers_per_block=2, latent_channels=16, norm_num_groups=32, sample_size=1024,
                            scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
                            use_post_quant_conv=False, force_upcast=True)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
    return FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(),
                        text_encoder_2=text_encoder_2, tokenizer_2=t5_tokenizer(), transformer=transformer)


def _wan(dtype, fill_device):
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    with parameters_on_meta():   # Wan-AI/Wan2.1-T2V-14B-Diffusers' component configs
        transformer = WanTransformer3DModel()   # diffusers' defaults are the 14B model
        text_encoder = UMT5EncoderModel(UMT5Config(
            vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
            relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
            dropout_rate=0.0, is_encoder_decoder=False))
        vae = AutoencoderKLWan()                # diffusers' defaults are Wan 2.1's VAE
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    return WanPipeline(tokenizer=t5_tokenizer(), text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                       transformer=transformer)


def full_pipeline(name: str, dtype: torch.dtype = torch.bfloat16, fill_device: torch.device | str | None = None,
                  *, materialized: bool = True):
    """The full-size ``name`` pipeline (one of `FULL_PIPELINES`) with random weights in host memory.

    ``fill_device``: where the random values are drawn (default: the CPU; ``"cuda"`` is much faster and uses one
    parameter's worth of GPU memory at a time). ``materialized=False`` leaves the parameters on the meta device
    (sizes and structure only: what a test without 40 GB of memory can check)."""
    builders = {"flux": _flux, "wan": _wan}
    if name not in builders:
        raise ValueError(f"full_pipeline: unknown pipeline {name!r}; known: {', '.join(FULL_PIPELINES)} "
                         f"(tiny versions of more: cfcompile.tiny_pipelines)")
    if not dtype.is_floating_point:
        raise ValueError(f"full_pipeline: dtype must be a floating dtype, got {dtype}")
    pipe = builders[name](dtype, fill_device)
    for m in pipe.components.values():
        if isinstance(m, nn.Module):
            if materialized:
                materialize(m, dtype, fill_device)
            else:
                m.eval().requires_grad_(False)
    return pipe
