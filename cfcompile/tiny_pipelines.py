"""Tiny diffusers pipelines with random weights and locally built tokenizers: no download, a CPU run in seconds.

    pipe = tiny_pipeline("flux")                   # FluxPipeline: CLIP + T5 encoders, Flux DiT, AutoencoderKL
    images = pipe(prompt="a cat", **TINY_CALLS["flux"], generator=torch.Generator().manual_seed(0)).images

Every component is the real diffusers / transformers class built from a small config (the ones diffusers' own fast
tests use, tokenizers aside): the same code paths as the released pipelines, none of the weights. Tokenizers are
built from a vocabulary written here (characters plus a few words), so prompts tokenize to something in range for
the tiny text encoders; what the text says does not matter for random weights. For the examples, the tests, and
anything else that must run a whole pipeline on a machine without network or GPU.

``"sd3"`` is Stable Diffusion 3's: two CLIPs with projections and T5, an MMDiT compiled whole by `cfcompile.apply`
(no ``_repeated_blocks`` in diffusers 0.42).
``"wan2.2"`` is Wan 2.2's layout: two experts (``transformer`` for high noise, ``transformer_2`` for low noise,
switched at ``boundary_ratio``: with `TINY_CALLS`' 4 steps, two steps each).
"""

from __future__ import annotations

import string
from typing import Any

import torch

PIPELINES = ("flux", "qwen-image", "wan", "wan2.2", "sd3")

#: Call arguments for a quick run of each tiny pipeline (few steps, small images / clips).
TINY_CALLS: dict[str, dict[str, Any]] = {
    "flux": dict(height=16, width=16, num_inference_steps=2, guidance_scale=3.5, max_sequence_length=16),
    "qwen-image": dict(height=32, width=32, num_inference_steps=2, true_cfg_scale=1.0, max_sequence_length=16),
    "wan": dict(height=16, width=16, num_frames=5, num_inference_steps=2, guidance_scale=1.0,
                max_sequence_length=16),
    "wan2.2": dict(height=16, width=16, num_frames=5, num_inference_steps=4, guidance_scale=1.0,
                   max_sequence_length=16),
    "sd3": dict(height=32, width=32, num_inference_steps=2, guidance_scale=1.0, max_sequence_length=16),
}

_CHARS = list(string.ascii_lowercase + string.digits + string.punctuation)
_WORDS = "a an the of cat dog photo painting squirrel eating burger dance monkey red blue on in".split()


def clip_tokenizer():
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in _CHARS:   # no merges: words split into characters, "</w>" marks the last one
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def t5_tokenizer():
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in _CHARS] + [("\u2581" + w, -1.0) for w in _WORDS]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=512)


def qwen_tokenizer():
    from transformers import Qwen2Tokenizer

    vocab = {c: i for i, c in enumerate(_CHARS + ["\u0120" + w for w in _WORDS] + ["\u0120", "\u010a"])}
    for s in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        vocab[s] = len(vocab)
    return Qwen2Tokenizer(vocab=vocab, merges=[], additional_special_tokens=["<|im_start|>", "<|im_end|>"])


def _t5_config(cls, vocab_size: int, d_model: int):
    return cls(vocab_size=vocab_size, d_model=d_model, d_ff=37, d_kv=8, num_heads=4, num_layers=2,
               relative_attention_num_buckets=8, dropout_rate=0.0)


def _clip_config():
    from transformers import CLIPTextConfig

    return CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=37,
                          num_attention_heads=4, num_hidden_layers=2, vocab_size=200, hidden_act="gelu",
                          projection_dim=32)


def _kl_vae(latent_channels: int):
    from diffusers import AutoencoderKL

    return AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
                         latent_channels=latent_channels, norm_num_groups=1, use_quant_conv=False,
                         use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)


def _flux():
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    tok_2 = t5_tokenizer()
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=2,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
    text_encoder = CLIPTextModel(_clip_config())
    text_encoder_2 = T5EncoderModel(_t5_config(T5Config, len(tok_2), 32))
    vae = _kl_vae(latent_channels=1)
    return FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
                        tokenizer=clip_tokenizer(), text_encoder_2=text_encoder_2, tokenizer_2=tok_2,
                        transformer=transformer)


def _qwen_image():
    from diffusers import (AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline,
                           QwenImageTransformer2DModel)
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = qwen_tokenizer()
    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=2,
                                              attention_head_dim=16, num_attention_heads=3, joint_attention_dim=16,
                                              guidance_embeds=False, axes_dims_rope=(8, 4, 4))
    vae = AutoencoderKLQwenImage(base_dim=24, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    n = len(tokenizer)   # the vision token ids only need to lie outside what the prompts tokenize to
    config = Qwen2_5_VLConfig(
        text_config=dict(hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, rope_theta=1e6,
                         rope_scaling=dict(mrope_section=[1, 1, 2], rope_type="default", type="default")),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=16),
        hidden_size=16, vocab_size=n + 3, vision_start_token_id=n, vision_end_token_id=n + 1, vision_token_id=n + 2)
    text_encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    return QwenImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
                             tokenizer=tokenizer, transformer=transformer)


def _wan(experts: int):
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = t5_tokenizer()
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    text_encoder = UMT5EncoderModel(_t5_config(UMT5Config, len(tokenizer), 32))
    dit = [WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16,
                                 out_channels=16, text_dim=32, freq_dim=32, ffn_dim=32, num_layers=2,
                                 cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
           for _ in range(experts)]
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    return WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                       transformer=dit[0], transformer_2=dit[1] if experts == 2 else None,
                       boundary_ratio=0.875 if experts == 2 else None)


def _sd3():
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection, T5Config, T5EncoderModel

    tok_3 = t5_tokenizer()
    torch.manual_seed(0)
    # SD3's pooled text embedding is both CLIPs' projections side by side: 2 x 32 = pooled_projection_dim
    transformer = SD3Transformer2DModel(sample_size=32, patch_size=1, in_channels=4, num_layers=2,
                                        attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                        joint_attention_dim=32, pooled_projection_dim=64, out_channels=4)
    clip = [CLIPTextModelWithProjection(_clip_config()) for _ in range(2)]
    text_encoder_3 = T5EncoderModel(_t5_config(T5Config, len(tok_3), 32))
    vae = _kl_vae(latent_channels=4)
    return StableDiffusion3Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=clip[0],
                                    tokenizer=clip_tokenizer(), text_encoder_2=clip[1], tokenizer_2=clip_tokenizer(),
                                    text_encoder_3=text_encoder_3, tokenizer_3=tok_3, transformer=transformer)


def tiny_pipeline(name: str, dtype: torch.dtype = torch.float32):
    """A tiny ``name`` pipeline (one of `PIPELINES`) with random weights (seed 0), on the CPU, eval mode."""
    builders = {"flux": _flux, "qwen-image": _qwen_image, "wan": lambda: _wan(1), "wan2.2": lambda: _wan(2),
                "sd3": _sd3}
    if name not in builders:
        raise ValueError(f"tiny_pipeline: unknown pipeline {name!r}; known: {', '.join(PIPELINES)}")
    try:
        import diffusers  # noqa: F401
        import transformers
    except ImportError as e:
        raise ImportError(f"tiny_pipeline({name!r}) needs diffusers and transformers>=5: "
                          f"pip install 'cfcompile[diffusers]' 'transformers>=5'") from e
    if int(transformers.__version__.split(".")[0]) < 5:
        raise ImportError(f"tiny_pipeline({name!r}) builds its tokenizers from in-memory vocabularies, which needs "
                          f"transformers>=5 (found {transformers.__version__}): pip install -U 'transformers>=5'")
    pipe = builders[name]()
    for m in pipe.components.values():
        if isinstance(m, torch.nn.Module):
            m.eval().requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)
