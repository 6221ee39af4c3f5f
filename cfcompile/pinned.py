"""Pinned host memory, views of raw bytes as tensors (UVA on CUDA), and the one alignment rule.

    pin(host)                      cudaHostRegister exactly host's bytes (no power-of-two rounding of pin_memory)
    uva = cuda_view(host, ptr, n)  n bytes at ptr seen as a cuda uint8 tensor: host memory (UVA) or device bytes
    alias(buf, offset, n)          n bytes of buf from offset as a tensor of its own (storage offset 0, same memory)
    align(n)                       n rounded up to ALIGN bytes: offsets in host groups, arenas and resident buffers
"""

from __future__ import annotations

import ctypes

import torch

from .config import ALIGN, format_bytes


def align(n: int) -> int:
    """``n`` rounded up to a multiple of `ALIGN` (256) bytes."""
    return (n + ALIGN - 1) // ALIGN * ALIGN


class CudaArrayInterface:
    """Lets ``torch.as_tensor`` wrap ``nbytes`` at ``ptr`` as a cuda tensor without copying: host memory (UVA) or
    bytes inside another device tensor. Holds ``owner`` so the memory outlives every view of it."""

    def __init__(self, owner: torch.Tensor, ptr: int, nbytes: int):
        self.owner = owner
        self.__cuda_array_interface__ = {"shape": (nbytes,), "typestr": "|u1", "data": (ptr, False),
                                         "version": 3, "strides": None}


def cuda_view(owner: torch.Tensor, ptr: int, nbytes: int, device: torch.device | str = "cuda") -> torch.Tensor:
    """``nbytes`` at ``ptr`` (inside ``owner``'s memory) as a uint8 tensor on ``device``, no copy."""
    return torch.as_tensor(CudaArrayInterface(owner, ptr, nbytes), device=device)


def pins(device: torch.device) -> bool:
    """Whether host buffers for ``device`` are pinned: for CUDA (copies at full H2D speed, UVA views); not for the
    CPU, where the "device" is host memory."""
    return device.type == "cuda"


def pin(host: torch.Tensor) -> None:
    # cudaHostRegister pins exactly these bytes; pin_memory=True would round the allocation up to a power of two.
    nbytes = host.numel() * host.element_size()
    err = torch.cuda.cudart().cudaHostRegister(host.data_ptr(), nbytes, 3)  # portable | mapped
    if int(err) != 0:
        raise RuntimeError(f"cudaHostRegister of {format_bytes(nbytes)} failed with CUDA error {int(err)}")


def unpin(ptr: int) -> None:
    try:
        torch.cuda.cudart().cudaHostUnregister(ptr)
    except Exception:  # interpreter shutdown: CUDA may already be gone
        pass


def alias(buf: torch.Tensor, offset: int, nbytes: int) -> torch.Tensor:
    """``nbytes`` of ``buf`` from byte ``offset`` as a tensor of its own (storage offset 0, same memory).

    Slots are passed to the compiled graph as separate inputs; giving each a storage of its own keeps Inductor from
    having to reason about inputs that are views with a storage offset.
    """
    ptr = buf.data_ptr() + offset
    if buf.device.type == "cuda":
        raw = cuda_view(buf, ptr, nbytes, buf.device)
    else:
        array = (ctypes.c_uint8 * nbytes).from_address(ptr)
        array.base = buf  # frombuffer keeps the array alive, the array keeps ``buf``
        raw = torch.frombuffer(array, dtype=torch.uint8)
    return raw.view(buf.dtype)
