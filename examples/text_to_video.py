"""Text to video with Wan (2.1, or 2.2 with its two experts) under one device-memory budget.

    python examples/text_to_video.py --model Wan-AI/Wan2.1-T2V-14B-Diffusers --memory-budget 16GiB \
        --height 480 --width 832 --frames 81 --out clip.gif
    python examples/text_to_video.py --tiny        # a tiny random-weight Wan 2.2 on the CPU (CI runs it)

`cfcompile.apply` offloads the transformer(s), the UMT5 text encoder and the VAE and compiles them with the
chunkflow backend, all under one budget (Wan 2.2's two experts: the resident chunks of both count, the streaming
arena is shared). ``--eager vae`` offloads a component without compiling it (the CPU run in CI does this:
the VAE's frame-by-frame decoder is slow to compile for a CPU). Writes an animated GIF (``.mp4`` with
``pip install imageio imageio-ffmpeg``; a GIF in its place without). ``CFCOMPILE_EXAMPLES_TINY=1`` is the same as
``--tiny``.
"""

import time

import torch

import cfcompile
from cfcompile.pipelines import save_output
from common import load, parser


def main() -> None:
    ap = parser(__doc__, model="Wan-AI/Wan2.1-T2V-14B-Diffusers", tiny="wan2.2", prompt="a cat walking on grass",
                size=(480, 832), steps=40, budget="16GiB", out="video.gif")
    ap.add_argument("--frames", type=int, default=81)
    args = ap.parse_args()
    pipe, call = load(args, frames=args.frames)   # Wan's VAE stays in fp32 (load_pipeline)

    cfcompile.apply(pipe, device=args.device, eager=args.eager, memory_budget=args.memory_budget)
    print("components:", pipe._cfcompile_applied.summary())
    t0 = time.perf_counter()
    frames = pipe(prompt=args.prompt, generator=torch.Generator().manual_seed(args.seed), output_type="np",
                  **call).frames[0]
    print(f"{len(frames)} frames of {frames.shape[1]}x{frames.shape[2]} in {time.perf_counter() - t0:.1f} s "
          f"(compiling included)")
    if args.device.startswith("cuda"):
        print(f"peak device memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    print(f"wrote {save_output(frames, args.out)}")


if __name__ == "__main__":
    main()
