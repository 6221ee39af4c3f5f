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

import time

import numpy as np
import torch
from PIL import Image

import cfcompile
from common import load, parser


def save(frames: np.ndarray, path: str, fps: int) -> None:
    if path.endswith(".mp4"):
        from diffusers.utils import export_to_video

        export_to_video(list(frames), path, fps=fps)
        return
    images = [Image.fromarray((f * 255).round().astype(np.uint8)) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=1000 // fps, loop=0)


def main() -> None:
    ap = parser(__doc__, model="Wan-AI/Wan2.1-T2V-14B-Diffusers", tiny="wan2.2", prompt="a cat walking on grass",
                size=(480, 832), steps=40, budget="16GiB", out="video.gif")
    ap.add_argument("--frames", type=int, default=81)
    args = ap.parse_args()
    pipe, call = load(args, "WanPipeline", num_frames=args.frames, guidance_scale=5.0)
    if not args.tiny:
        pipe.vae.to(torch.float32)   # Wan's VAE runs in fp32

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
