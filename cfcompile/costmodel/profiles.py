"""Device profiles: what the first-order model needs to know about a GPU, built in, probed or given.

    resolve_profile(None, cuda:0)      cached probe of this GPU model (~/.cache/cfcompile/profiles/), probed on
                                       first use (`probe.probe_device` + `from_probe`, about a second)
    resolve_profile("H100", ...)       a built-in profile: planning without the GPU (``cfcompile plan``)
    resolve_profile("my.json", ...)    a user's profile: DeviceProfile fields as JSON

Built-in numbers are dense bf16 peaks and bandwidths from vendor sheets, except where measured on our machines: the
H100 entry's H2D bandwidth, per-copy latency and memory efficiency come from the probe in
benchmarks/results/probe_h100_2026-11-23.log; its matmul efficiency 0.7 is the low end of the 0.62-0.80 the probe
measured on Flux's matmul shapes (small ones are the least efficient).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

#: Where probed profiles are cached (override with CFCOMPILE_CACHE_DIR).
CACHE_ENV = "CFCOMPILE_CACHE_DIR"


@dataclasses.dataclass(frozen=True)
class DeviceProfile:
    name: str
    matmul_tflops: float        # dense bf16/fp16 peak, TFLOP/s
    memory_gbs: float           # device memory bandwidth, GB/s
    h2d_gbs: float              # pinned host -> device copy bandwidth for large copies, GB/s
    h2d_latency_us: float = 5.0  # fixed cost per copy when copies are queued back to back
    matmul_efficiency: float = 0.7  # share of peak large matmuls reach
    memory_efficiency: float = 0.8  # share of peak bandwidth memory-bound kernels reach
    attention_efficiency: float = 0.55  # share of the matmul peak fused attention kernels reach
    kernel_overhead_us: float = 4.0  # per-kernel launch/tail cost
    link_gbs: float = 0.0       # GPU <-> GPU bandwidth seen by an all-to-all (bus bandwidth), GB/s; 0 = unknown
    link_shares_h2d: bool = False  # collectives go over the same PCIe path as H2D copies (no NVLink)
    link_latency_us: float = 15.0  # fixed cost per collective
    contention_collective: float = 1.95  # collective slowdown with a host copy in flight on a shared PCIe path
    contention_copy: float = 1.3    # host copy slowdown under such a collective (both measured on the 2-GPU H200
    #                                 node with NCCL_P2P_DISABLE=1: all-to-all 1.95x, 1 GiB copy 1.3x)
    source: str = "built-in"    # built-in, probe, or the file it came from

    def copy_ms(self, nbytes: int, copies: int = 1) -> float:
        """Time of ``copies`` back-to-back copies moving ``nbytes`` in all (latency + bytes / bandwidth)."""
        return nbytes / (self.h2d_gbs * 1e9) * 1e3 + copies * self.h2d_latency_us / 1e3

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict, source: str = "") -> "DeviceProfile":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ValueError(f"device profile {source or ''}: unknown field(s) {unknown}; allowed: "
                             f"{', '.join(sorted(fields))}")
        missing = [f for f in ("name", "matmul_tflops", "memory_gbs", "h2d_gbs") if f not in d]
        if missing:
            raise ValueError(f"device profile {source or ''}: missing field(s) {missing}")
        p = cls(**{**d, **({"source": source} if source else {})})
        for f in ("matmul_tflops", "memory_gbs", "h2d_gbs"):
            if not getattr(p, f) > 0:
                raise ValueError(f"device profile {p.name}: {f} must be positive, got {getattr(p, f)!r}")
        return p


PROFILES: dict[str, DeviceProfile] = {p.name: p for p in (
    DeviceProfile("H100", matmul_tflops=989, memory_gbs=3350, h2d_gbs=55.1, h2d_latency_us=3.0,
                  matmul_efficiency=0.7, memory_efficiency=0.9, link_gbs=290.0),
    DeviceProfile("H200", matmul_tflops=989, memory_gbs=4800, h2d_gbs=51.4, h2d_latency_us=3.0,
                  matmul_efficiency=0.75, memory_efficiency=0.9, link_gbs=290.0),
    DeviceProfile("A100", matmul_tflops=312, memory_gbs=2039, h2d_gbs=24.0, link_gbs=200.0),
    DeviceProfile("L40S", matmul_tflops=362, memory_gbs=864, h2d_gbs=24.0, link_gbs=20.0, link_shares_h2d=True),
    DeviceProfile("RTX4090", matmul_tflops=165, memory_gbs=1008, h2d_gbs=24.0, link_gbs=20.0, link_shares_h2d=True),
    DeviceProfile("cpu", matmul_tflops=0.2, memory_gbs=20, h2d_gbs=10.0, h2d_latency_us=1.0,
                  kernel_overhead_us=20.0, link_gbs=5.0, link_shares_h2d=True),
)}


def profile_for(device_name: str) -> DeviceProfile:
    """The built-in profile whose name appears in ``device_name`` (e.g. 'NVIDIA H100 80GB HBM3')."""
    key = device_name.replace(" ", "").upper()
    for name in sorted(PROFILES, key=len, reverse=True):
        if name.upper() in key:
            return PROFILES[name]
    raise ValueError(f"no built-in device profile matches {device_name!r}; known: {', '.join(PROFILES)}. "
                     f"Pass options={{'profile': 'path/to/profile.json'}} or let the backend probe the GPU.")


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cfcompile") / "profiles"


def _cache_path(device_name: str) -> Path:
    import torch

    tag = re.sub(r"[^A-Za-z0-9]+", "_", f"{device_name}_cuda{torch.version.cuda}").strip("_")
    return cache_dir() / f"{tag}.json"


def load_profile(path: str | os.PathLike) -> DeviceProfile:
    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"profile: {os.fspath(path)!r} is neither a built-in profile name ({', '.join(PROFILES)}) "
                         f"nor an existing JSON file") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"profile: {os.fspath(path)!r} is not valid JSON ({e})") from None
    return DeviceProfile.from_json(d, source=os.fspath(path))


def from_probe(m: dict) -> DeviceProfile:
    """A profile from `probe.probe_device`'s measurements: efficiencies against the built-in peak of the same GPU
    family when there is one, else the measured throughput is the peak."""
    name = m["name"]
    try:
        peak = dataclasses.replace(profile_for(name), source="probe")
    except ValueError:
        peak = DeviceProfile(name, matmul_tflops=m["matmul_tflops"], memory_gbs=m["memory_gbs"],
                             h2d_gbs=m["h2d_gbs"], source="probe")
    return dataclasses.replace(
        peak, name=name, h2d_gbs=round(m["h2d_gbs"], 2), h2d_latency_us=round(max(m["h2d_latency_ms"], 0.0) * 1e3, 2),
        matmul_efficiency=round(min(m["matmul_tflops"] / peak.matmul_tflops, 1.0), 3),
        memory_efficiency=round(min(m["memory_gbs"] / peak.memory_gbs, 1.0), 3), source="probe")


def resolve_profile(spec: str | None, device) -> DeviceProfile:
    """The profile the planner uses for ``device`` (see the module docstring)."""
    import torch

    if spec is not None:
        if spec in PROFILES:
            return PROFILES[spec]
        return load_profile(spec)
    device = torch.device(device)
    if device.type != "cuda":
        return PROFILES["cpu"]
    name = torch.cuda.get_device_name(device)
    path = _cache_path(name)
    if path.exists():
        try:
            return load_profile(path)
        except ValueError as e:
            log.warning("chunkflow: ignoring the cached profile %s (%s); probing again", path, e)
    from .probe import probe_device

    try:
        profile = from_probe(probe_device(device))
    except Exception as e:  # noqa: BLE001 - planning must not fail because a measurement did
        try:
            fallback = profile_for(name)
        except ValueError:
            raise RuntimeError(f"chunkflow: probing {name} failed ({e}) and there is no built-in profile for it; "
                               f"pass options={{'profile': 'path/to/profile.json'}}") from e
        log.warning("chunkflow: probing %s failed (%s); using the built-in %s profile", name, e, fallback.name)
        return fallback
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(profile.to_json(), indent=1))
        tmp.replace(path)
        log.info("chunkflow: probed %s and cached its profile in %s", name, path)
    except OSError as e:
        log.warning("chunkflow: could not cache the device profile in %s (%s)", path, e)
    return profile
