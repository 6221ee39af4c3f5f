"""Text to video with Wan (2.1, or 2.2 with its two experts) under one device-memory budget.

    python examples/text_to_video.py --model Wan-AI/Wan2.1-T2V-14B-Diffusers --memory-budget 16GiB \
        --height 480 --width 832 --frames 81 --out clip.gif
    python examples/text_to_video.py --tiny        # a tiny random-weight Wan 2.2 on the CPU (CI runs it)

`cfcompile.apply` offloads the transformer(s), the UMT5 text encoder and the VAE and compiles them with the
chunkflow backend, all under one budget (Wan 2.2's two experts: the resident chunks of both count, the streaming
arena is shared). ``--eager vae`` offloads a component without compiling it (the CPU run in CI does this:
the VAE's frame-by-frame decoder is slow to compile for a CPU). Writes an animated GIF (``.mp4`` with
``pip install imageio imageio-ffmpeg``). ``CFCOMPILE_EXAMPLES_TINY=1`` is the same as ``--tiny``.
"""

import argparse
import os
import time

import numpy as np
import torch
from PIL import Image

import cfcompile


def save(frames: np.ndarray, path: str, fps: int) -> None:
    if path.endswith(".mp4"):
        from diffusers.utils import export_to_video

        export_to_video(list(frames), path, fps=fps)
        return
    images = [Image.fromarray((f * 255).round().astype(np.uint8)) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=1000 // fps, loop=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="Wan-AI/Wan2.1-T2V-14B-Diffusers", help="local folder or hub id (hub cache)")
    ap.add_argument("--tiny", action="store_true", default=os.environ.get("CFCOMPILE_EXAMPLES_TINY") == "1",
                    help="a tiny Wan 2.2 with random weights, no download")
    ap.add_argument("--prompt", default="a cat walking on grass")
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--memory-budget", help="device memory for all components together (default 16GiB; "
                                            "256MiB with --tiny)")
    ap.add_argument("--eager", action="append", default=[], help="a component to offload but not compile")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="video.gif")
    args = ap.parse_args()
    args.memory_budget = args.memory_budget or ("256MiB" if args.tiny else "16GiB")

    if args.tiny:
        from cfcompile.tiny_pipelines import TINY_CALLS, tiny_pipeline

        pipe, call = tiny_pipeline("wan2.2"), dict(TINY_CALLS["wan2.2"])
    else:
        from diffusers import WanPipeline

        pipe = WanPipeline.from_pretrained(args.model, torch_dtype=torch.bfloat16)   # on the CPU
        pipe.vae.to(torch.float32)   # Wan's VAE runs in fp32
        call = dict(height=args.height, width=args.width, num_frames=args.frames, num_inference_steps=args.steps,
                    guidance_scale=5.0)

    cfcompile.apply(pipe, device=args.device, eager=args.eager, memory_budget=args.memory_budget)
    print("components:", pipe._cfcompile_applied.summary())
    t0 = time.perf_counter()
    frames = pipe(prompt=args.prompt, generator=torch.Generator().manual_seed(args.seed), output_type="np",
                  **call).frames[0]
    print(f"{len(frames)} frames of {frames.shape[1]}x{frames.shape[2]} in {time.perf_counter() - t0:.1f} s "
          f"(compiling included)")
    if args.device.startswith("cuda"):
        print(f"peak device memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    save(frames, args.out, fps=16)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
