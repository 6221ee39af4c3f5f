"""What the collectives of a sequence-parallel graph travel over, and whether that path is the one the weight copies
take (PCIe from host memory). It decides ``collective_policy="auto"`` (yield where the paths are shared) and, for a
profile the backend found itself (probed or built in), the link the cost model charges collectives to.

In order, the first that applies:

    CPU device                          the profile as it is
    process group not NCCL (gloo)       "host": CUDA tensors are staged through host memory       shares the path
    NCCL_P2P_DISABLE=1                  "pcie": NCCL goes through host memory                     shares the path
    ranks on several nodes              "network": the NIC hangs off PCIe next to the GPU          shares the path
    NVML: an NVLink of this GPU active  "nvlink"                                                   separate paths
    NVML: no NVLink active              "pcie" (peer-to-peer over PCIe, or through the host)       shares the path
    no NVML: peer access to another GPU "nvlink" (assumed; peer access is also possible over PCIe)
    otherwise                           "pcie"

Peer access alone does not tell NVLink from PCIe (PCIe-only servers with P2P enabled have it too), hence NVML first.
On a shared path the cost model's link is at most 24 GB/s: NCCL's all-to-all measured on the 2-GPU H200 node with
NCCL_P2P_DISABLE=1, where it took 1.95x as long with a 1 GiB host copy in flight (``contention_collective``).
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os

import torch

from .profiles import DeviceProfile

log = logging.getLogger(__name__)

PCIE_ALL_TO_ALL_GBS = 24.0  # all-to-all bus bandwidth through host memory, 2x H200, NCCL_P2P_DISABLE=1


@dataclasses.dataclass(frozen=True)
class Interconnect:
    kind: str          # "nvlink", "pcie", "host", "network", or "cpu"
    shares_h2d: bool   # collectives use the PCIe path the weight copies use
    reason: str

    def adjust(self, profile: DeviceProfile) -> DeviceProfile:
        """``profile`` with the link this interconnect gives collectives (only where the path is shared)."""
        if not self.shares_h2d or profile.link_shares_h2d:
            return profile
        gbs = min(profile.link_gbs, PCIE_ALL_TO_ALL_GBS) if profile.link_gbs > 0 else PCIE_ALL_TO_ALL_GBS
        return dataclasses.replace(profile, link_gbs=gbs, link_shares_h2d=True)


def detect(device: torch.device) -> Interconnect:
    """The interconnect of this rank's collectives (module docstring)."""
    device = torch.device(device)
    if device.type != "cuda":
        return Interconnect("cpu", False, "CPU device")
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        backend = str(dist.get_backend())
        if "nccl" not in backend:
            return Interconnect("host", True, f"process group backend {backend}: CUDA tensors go through host memory")
    if os.environ.get("NCCL_P2P_DISABLE", "0") not in ("", "0"):
        return Interconnect("pcie", True, "NCCL_P2P_DISABLE is set: NCCL goes through host memory")
    world, local = os.environ.get("WORLD_SIZE"), os.environ.get("LOCAL_WORLD_SIZE")
    if world and local and world.isdigit() and local.isdigit() and int(world) > int(local):
        return Interconnect("network", True, f"{world} ranks, {local} on this node: collectives cross the network")
    index = device.index if device.index is not None else torch.cuda.current_device()
    nvlink = nvlink_active(index)
    if nvlink is not None:
        return (Interconnect("nvlink", False, f"NVML: an NVLink of GPU {index} is active") if nvlink
                else Interconnect("pcie", True, f"NVML: no NVLink of GPU {index} is active"))
    count = torch.cuda.device_count()
    if count > 1 and torch.cuda.can_device_access_peer(index, (index + 1) % count):
        return Interconnect("nvlink", False, "peer access between GPUs (NVML unavailable; NVLink assumed)")
    return Interconnect("pcie", True, "no peer access between GPUs (NVML unavailable)")


_NVML_MAX_LINKS = 18   # NVML_NVLINK_MAX_LINKS


def nvlink_active(index: int) -> bool | None:
    """Whether any NVLink of CUDA device ``index`` is active, through NVML (matched by PCI bus id, so
    ``CUDA_VISIBLE_DEVICES`` does not matter); None when NVML or the bus id is not available."""
    props = torch.cuda.get_device_properties(index)
    if not all(hasattr(props, a) for a in ("pci_domain_id", "pci_bus_id", "pci_device_id")):
        return None
    bus_id = f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0".encode()
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None
    if nvml.nvmlInit_v2() != 0:
        return None
    try:
        handle = ctypes.c_void_p()
        if nvml.nvmlDeviceGetHandleByPciBusId_v2(ctypes.c_char_p(bus_id), ctypes.byref(handle)) != 0:
            return None
        state = ctypes.c_uint()
        answered = False
        for link in range(_NVML_MAX_LINKS):
            rc = nvml.nvmlDeviceGetNvLinkState(handle, ctypes.c_uint(link), ctypes.byref(state))
            if rc == 0:
                answered = True
                if state.value == 1:   # NVML_FEATURE_ENABLED
                    return True
            elif rc == 3:              # NVML_ERROR_NOT_SUPPORTED: this GPU has no NVLink
                return False
        return False if answered else None
    finally:
        nvml.nvmlShutdown()
