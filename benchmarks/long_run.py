"""A long run on a real-size model (hardening): N denoising-step calls of one compiled, offloaded DiT.

    python benchmarks/long_run.py --model flux --height 512 --width 512 --rf 0.75 --calls 1000
    python benchmarks/long_run.py --model flux --tiny --device cpu --calls 50          # smoke test

Shows: device memory allocated, host memory (RSS) and the backend's pending copies / events do not grow between
call 10 and call N; the output of call N equals call 1's (the same inputs, bitwise); step time over the run
(median of the first and the last 100 calls). Writes $OUT/long_run_<model>_<tokens>.json.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent.parent))
import cfcompile  # noqa: E402
from cfcompile.compiler.backend import chunkflow as chunkflow_backend  # noqa: E402
from cfcompile.presets import get_preset  # noqa: E402
from cfcompile.runtime import ops  # noqa: E402
from common import workload_of, workload_parser  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> int:
    p = workload_parser(__doc__)
    p.add_argument("--rf", type=float, default=0.75)
    p.add_argument("--chunk-size", default="16MiB")
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--tiny", action="store_true")
    args = p.parse_args()
    cuda = args.device == "cuda"
    device, dtype = torch.device(args.device), (torch.bfloat16 if cuda else torch.float32)
    preset = get_preset(args.model)
    model = preset.build(device, dtype, tiny=args.tiny)
    wl = workload_of(args)
    inputs = preset.inputs(model.config, wl, device, dtype)
    cfcompile.offload(model, device=device)
    fn = torch.compile(model, backend=chunkflow_backend,
                       options={"resident_fraction": args.rf, "chunk_size": args.chunk_size})

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def state() -> dict:
        sync()
        return dict(allocated=torch.cuda.memory_allocated() if cuda else None, rss=rss_bytes(),
                    pending=len(ops._pending), events=len(ops._events))

    times, marks = [], {}
    with torch.no_grad():
        first = fn(**inputs)[0].clone()
        marks[1] = state()
        for i in range(2, args.calls + 1):
            sync()
            t = time.perf_counter()
            out = fn(**inputs)[0]
            sync()
            times.append((time.perf_counter() - t) * 1e3)
            if i in (10, args.calls):
                marks[i] = state()
        equal = torch.equal(out, first)
    m10, mn = marks[10], marks[args.calls]
    flat = all(m10[k] == mn[k] for k in ("allocated", "pending", "events"))
    rss_growth = mn["rss"] - m10["rss"]
    row = dict(model=args.model, tokens=preset.tokens(wl), rf=args.rf, chunk_size=args.chunk_size, calls=args.calls,
               marks=marks, device_state_flat=flat, rss_growth_mib=rss_growth / 2**20, last_equals_first=equal,
               first_100_ms=statistics.median(times[:100]), last_100_ms=statistics.median(times[-100:]),
               device=torch.cuda.get_device_name() if cuda else "cpu", torch=torch.__version__,
               date=time.strftime("%Y-%m-%d"))
    print(json.dumps(row, indent=1))
    out_dir = Path(os.environ.get("OUT", "."))
    (out_dir / f"long_run_{args.model}_{row['tokens']}.json").write_text(json.dumps(row, indent=1))
    # RSS may move by allocator noise; a leak of a step's tensors would be megabytes per call
    ok = flat and equal and rss_growth < 64 * 2**20
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
