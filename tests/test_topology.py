"""cfcompile.costmodel.topology: which path collectives take, decided without GPUs (the CUDA and NVML calls are
stood in for), and what it changes: the auto policy and, for a profile the backend found itself, the link."""

from __future__ import annotations

import ctypes
import dataclasses
import types

import pytest
import torch

from cfcompile.plan.resolve import resolve
from cfcompile.config import ChunkFlowConfig
from cfcompile.costmodel import topology
from cfcompile.costmodel.profiles import PROFILES

CUDA0 = torch.device("cuda", 0)


@pytest.fixture
def node(monkeypatch):
    """A 2-GPU node with no process group and no NCCL settings; tests change one thing."""
    for var in ("NCCL_P2P_DISABLE", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "can_device_access_peer", lambda a, b: True)
    monkeypatch.setattr(topology, "nvlink_active", lambda index: True)
    return monkeypatch


def test_nvlink_node_overlaps_and_keeps_the_profile(node):
    link = topology.detect(CUDA0)
    assert (link.kind, link.shares_h2d) == ("nvlink", False), link
    h200 = PROFILES["H200"]
    assert link.adjust(h200) is h200
    assert resolve(ChunkFlowConfig(), h200, link=link).collective_policy == "overlap"


@pytest.mark.parametrize("setup, kind", [
    (lambda m: m.setenv("NCCL_P2P_DISABLE", "1"), "pcie"),
    (lambda m: (m.setenv("WORLD_SIZE", "16"), m.setenv("LOCAL_WORLD_SIZE", "8")), "network"),
    (lambda m: m.setattr(topology, "nvlink_active", lambda index: False), "pcie"),   # P2P over PCIe has peer access
    (lambda m: (m.setattr(topology, "nvlink_active", lambda index: None),
                m.setattr(torch.cuda, "can_device_access_peer", lambda a, b: False)), "pcie"),
    (lambda m: (m.setattr(torch.distributed, "is_initialized", lambda: True),
                m.setattr(torch.distributed, "get_backend", lambda group=None: "gloo")), "host"),
])
def test_shared_paths_yield_and_charge_collectives_to_pcie(node, setup, kind):
    setup(node)
    link = topology.detect(CUDA0)
    assert (link.kind, link.shares_h2d) == (kind, True), link
    h200 = PROFILES["H200"]
    adjusted = link.adjust(h200)
    assert adjusted.link_shares_h2d and adjusted.link_gbs == topology.PCIE_ALL_TO_ALL_GBS < h200.link_gbs
    assert dataclasses.replace(adjusted, link_gbs=h200.link_gbs, link_shares_h2d=False) == h200  # nothing else
    assert resolve(ChunkFlowConfig(), h200, link=link).collective_policy == "yield"
    # an explicit policy wins over the topology
    assert resolve(ChunkFlowConfig(collective_policy="overlap"), h200, link=link).collective_policy == "overlap"


def test_without_nvml_peer_access_counts_as_nvlink(node):
    node.setattr(topology, "nvlink_active", lambda index: None)
    assert topology.detect(CUDA0).kind == "nvlink"


def test_a_profile_that_already_shares_keeps_its_link(node):
    node.setenv("NCCL_P2P_DISABLE", "1")
    l40s = PROFILES["L40S"]
    assert topology.detect(CUDA0).adjust(l40s) is l40s


def test_cpu_device_leaves_the_profile_alone():
    link = topology.detect(torch.device("cpu"))
    assert (link.kind, link.shares_h2d) == ("cpu", False)
    cpu = PROFILES["cpu"]
    assert link.adjust(cpu) is cpu and resolve(ChunkFlowConfig(), cpu, link=link).collective_policy == "yield"  # cpu shares


class _FakeNvml:
    """NVML's three calls ``nvlink_active`` makes; ``states``: per link, a return code and a state."""

    def __init__(self, states):
        self.states, self.shut = states, False

    def nvmlInit_v2(self):
        return 0

    def nvmlShutdown(self):
        self.shut = True
        return 0

    def nvmlDeviceGetHandleByPciBusId_v2(self, bus_id, handle):
        assert bus_id.value == b"00000000:1b:00.0", bus_id.value
        return 0

    def nvmlDeviceGetNvLinkState(self, handle, link, state):
        rc, value = self.states[link.value] if link.value < len(self.states) else (2, 0)   # 2: no such link
        ctypes.cast(state, ctypes.POINTER(ctypes.c_uint)).contents.value = value
        return rc


@pytest.mark.parametrize("states, expected", [
    ([(0, 0), (0, 1)], True),      # the second link is up
    ([(0, 0)] * 4, False),         # links, none up
    ([(3, 0)], False),             # NVML_ERROR_NOT_SUPPORTED: no NVLink on this GPU
    ([], None),                    # no link answered
])
def test_nvlink_active_reads_nvml(monkeypatch, states, expected):
    fake = _FakeNvml(states)
    props = types.SimpleNamespace(pci_domain_id=0, pci_bus_id=0x1B, pci_device_id=0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    monkeypatch.setattr(topology.ctypes, "CDLL", lambda name: fake)
    assert topology.nvlink_active(0) is expected
    assert fake.shut


def test_nvlink_active_without_nvml(monkeypatch):
    props = types.SimpleNamespace(pci_domain_id=0, pci_bus_id=0x1B, pci_device_id=0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)

    def missing(name):
        raise OSError(name)

    monkeypatch.setattr(topology.ctypes, "CDLL", missing)
    assert topology.nvlink_active(0) is None
