"""The pass manager: passes run in order, each logged and timed, dumped before / after, disabled by name."""

import logging
import os

import pytest
import torch

import cfcompile
from cfcompile.compiler.pass_manager import NAMES, check_disabled
from toy import toy


def test_names_and_validation():
    assert NAMES == ("find_reads", "place_prefetches", "insert_ops", "schedule_table")
    check_disabled(["insert_ops"])
    with pytest.raises(ValueError, match="disable_passes: no chunkflow pass named 'nope'; the passes are find_reads"):
        check_disabled(["nope"])
    with pytest.raises(ValueError, match="disable_passes: expected a list of pass names"):
        cfcompile.ChunkFlowConfig(disable_passes="insert_ops")


def test_each_pass_logged_timed_and_dumped(tmp_path, caplog):
    m, x = toy(blocks=2)
    with torch.no_grad():
        ref = m(x)
    cfcompile.offload(m, device="cpu")
    with caplog.at_level(logging.INFO, logger="cfcompile.compiler.pass_manager"), torch.no_grad():
        out = cfcompile.compile(m, chunk_size=16384, dump=str(tmp_path))(x)
    torch.testing.assert_close(out, ref)
    said = [r.getMessage() for r in caplog.records]
    assert [s.split(":")[1].split()[1] for s in said if s.startswith("chunkflow: pass ")] == list(NAMES)
    assert any("insert_ops: +" in s and "cfcompile.wait_.default" in s for s in said)
    dump = cfcompile.compiled_graphs()[-1].dump_dir
    # the input and the graph after each pass that changed it (only insert_ops does)
    assert sorted(os.listdir(os.path.join(dump, "passes"))) == ["00_input.txt", "03_insert_ops.txt"]


def test_disabled_rewrite_reads_weights_in_place_and_stays_exact(caplog):
    m, x = toy(blocks=2)
    with torch.no_grad():
        ref = m(x)
    cfcompile.offload(m, device="cpu")
    with caplog.at_level(logging.INFO, logger="cfcompile.compiler.pass_manager"), torch.no_grad():
        out = cfcompile.compile(m, chunk_size=16384, disable_passes=["place_prefetches"],
                                inductor={"fx_graph_cache": False})(x)   # a cache hit runs no pass
    torch.testing.assert_close(out, ref)
    said = " | ".join(r.getMessage() for r in caplog.records)
    assert "pass place_prefetches disabled" in said and "pass insert_ops disabled (it needs place_prefetches)" in said
