import pytest
import torch
from hypothesis import given, settings, strategies as st

from cfcompile import ChunkFlowConfig
from cfcompile.offload import Group, Slot
from cfcompile.plan.analysis import WeightRead
from cfcompile.plan.layout import make_plan


def blocks(sizes_per_block: list[list[int]], span: int = 10) -> list[WeightRead]:
    """Synthetic reads: block b's weights (byte sizes) packed at 256-aligned offsets, read in nodes [b*span, ...)."""
    reads, index = [], 0
    for b, sizes in enumerate(sizes_per_block):
        offsets, off = [], 0
        for n in sizes:
            offsets.append(off)
            off = (off + n + 255) // 256 * 256
        host = torch.empty(off // 4)
        g = Group(f"blocks.{b}", torch.float32, [Slot(f"w{i}", o, n, (n // 4,)) for i, (o, n) in
                                                   enumerate(zip(offsets, sizes))], off, host, host, False)
        for i, (o, n) in enumerate(zip(offsets, sizes)):
            reads.append(WeightRead(index, g, o, n, (n // 4,), (1,), b * span + i, b * span + i + 1))
            index += 1
    return reads


def live_overlaps(plan):
    """Pairs of streamed groups that share arena bytes while both are live (issue point .. last read; a wrap-around
    group also from its issue in the previous call's tail to the end of the call)."""
    st_ = plan.streamed

    def spans(g):
        out = [((st_[g.issue_before].first_use if g.issue_before is not None else -1) - 0.5, g.last_use)]
        if g.wrap_before is not None:
            out.append((st_[g.wrap_before].first_use - 0.5, float("inf")))
        return out

    bad = []
    for a in range(len(st_)):
        for b in range(a + 1, len(st_)):
            ga, gb = st_[a], st_[b]
            share = ga.arena_offset < gb.arena_offset + gb.streamed_bytes and \
                gb.arena_offset < ga.arena_offset + ga.streamed_bytes
            live = any(s1 <= e2 and s2 <= e1 for s1, e1 in spans(ga) for s2, e2 in spans(gb))
            if share and live:
                bad.append((ga.key, gb.key))
    return bad


def test_streaming_everything_double_buffers():
    reads = blocks([[1024] * 4] * 6)
    plan = make_plan(reads, ChunkFlowConfig(chunk_size=1024))
    assert len(plan.chunks) == 24 and not any(c.resident for c in plan.chunks)
    assert plan.streamed_bytes == 6 * 4096 and plan.total_resident_bytes == 0
    assert plan.total_arena_bytes == 2 * 4096            # depth 1: a ring of two block regions
    assert [g.issue_before for g in plan.streamed] == [None, 0, 1, 2, 3, 4]
    # wrap-around: block 0 of the next call is prefetched before the wait of block 5, into block 4's region
    assert [g.wrap_before for g in plan.streamed] == [5, None, None, None, None, None]
    assert not live_overlaps(plan)
    assert plan.streamed[0].arena_offset == plan.streamed[4].arena_offset
    deeper = make_plan(reads, ChunkFlowConfig(chunk_size=1024, prefetch_depth=2))
    assert deeper.total_arena_bytes == 3 * 4096 and not live_overlaps(deeper)
    assert [g.wrap_before for g in deeper.streamed] == [4, 5, None, None, None, None]
    no_wrap = make_plan(reads, ChunkFlowConfig(chunk_size=1024, wrap_around=False))
    assert all(g.wrap_before is None for g in no_wrap.streamed) and no_wrap.total_arena_bytes == 2 * 4096
    assert make_plan(reads, ChunkFlowConfig(chunk_size=1024, prefetch_depth=0)).total_arena_bytes == 4096


def test_resident_fraction_keeps_a_prefix_of_every_block():
    reads = blocks([[1024] * 4] * 6)
    plan = make_plan(reads, ChunkFlowConfig(chunk_size=1024, resident_fraction=0.5))
    assert sum(c.resident for c in plan.chunks) == 12
    for g in plan.groups:
        assert g.resident_range == (0, 2048) and g.stream_range == (2048, 4096)
    assert plan.total_resident_bytes == 6 * 2048 and plan.streamed_bytes == 6 * 2048
    assert plan.total_arena_bytes == 2 * 2048
    locations = [w.location for w in plan.weights]
    assert locations == ["resident", "resident", "arena", "arena"] * 6
    everything = make_plan(reads, ChunkFlowConfig(chunk_size=1024, resident_fraction=1.0))
    assert everything.streamed == () and everything.total_arena_bytes == 0
    assert everything.total_resident_bytes == 6 * 4096


def test_memory_moves_between_arena_and_resident_monotonically():
    reads = blocks([[3000, 700, 5000, 256]] * 5)
    plans = [make_plan(reads, ChunkFlowConfig(chunk_size=1024, resident_fraction=f)) for f in (0, .25, .5, .75, 1)]
    streamed = [p.streamed_bytes for p in plans]
    resident = [p.total_resident_bytes for p in plans]
    assert streamed == sorted(streamed, reverse=True) and resident == sorted(resident)
    assert streamed[-1] == 0 and resident[0] == 0


def test_weight_straddling_the_boundary_is_streamed_whole():
    # chunk 0 = [0, 1536) holds w0 = [0, 1000) and the start of w1 = [1024, 2024)
    reads = blocks([[1000, 1000, 1000]] * 2)
    plan = make_plan(reads, ChunkFlowConfig(chunk_size=1536, resident_fraction=0.5))
    g = plan.groups[0]
    # chunk 0 was chosen, but its tail belongs to w1, which is streamed whole: only w0 stays resident
    assert [c.resident for c in plan.chunks if c.group == g.key] == [False, False]
    assert g.resident_range == (0, 1000) and g.stream_range == (1024, 3048)
    # a weight spanning the chosen chunks and more leaves nothing resident in its group
    first = make_plan(blocks([[3000]] * 2), ChunkFlowConfig(chunk_size=1024, resident_fraction=0.5))
    assert first.total_resident_bytes == 0 and not any(c.resident for c in first.chunks)
    assert [w.location for w in plan.weights[:3]] == ["resident", "arena", "arena"]


def test_copies_are_chunk_granular_and_cover_the_streamed_bytes():
    reads = blocks([[5000, 3000, 12000]] * 3)
    plan = make_plan(reads, ChunkFlowConfig(chunk_size=4096, resident_fraction=0.25))
    for g in plan.streamed:
        covered = sorted((c.src_offset, c.src_offset + c.nbytes) for c in g.copies)
        assert covered[0][0] == g.stream_range[0] and covered[-1][1] == g.stream_range[1]
        assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))
        for c in g.copies:
            chunk = plan.chunks[c.chunk]
            assert chunk.start <= c.src_offset and c.src_offset + c.nbytes <= chunk.start + chunk.nbytes <= \
                chunk.start + 4096
            assert c.dst_offset == g.arena_offset + c.src_offset - g.stream_range[0]


def test_plan_is_deterministic():
    reads = blocks([[1024, 4096, 777]] * 4)
    a = make_plan(reads, ChunkFlowConfig(chunk_size=2048, resident_fraction=0.3))
    b = make_plan(list(reversed(reads)), ChunkFlowConfig(chunk_size=2048, resident_fraction=0.3))
    assert a == b and a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != make_plan(reads, ChunkFlowConfig(chunk_size=2048)).fingerprint()


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.lists(st.integers(4, 20000).map(lambda n: n // 4 * 4), min_size=1, max_size=5),
                      min_size=1, max_size=8),
       chunk=st.sampled_from([256, 1024, 4096, 65536]), fraction=st.floats(0, 1), depth=st.integers(0, 3),
       wrap=st.booleans())
def test_live_groups_never_share_arena_bytes(sizes, chunk, fraction, depth, wrap):
    reads = blocks(sizes)
    plan = make_plan(reads, ChunkFlowConfig(chunk_size=chunk, resident_fraction=fraction, prefetch_depth=depth,
                                            wrap_around=wrap))
    assert not live_overlaps(plan)
    n = len(plan.chunks)
    # round(fraction * n) chunks are chosen; those holding part of a weight that straddles the boundary are
    # streamed with it after all
    resident = sum(c.resident for c in plan.chunks)
    assert resident <= round(fraction * n)
    assert fraction < 1 or resident == n
    assert sum(c.nbytes for c in plan.chunks if c.resident) <= plan.total_resident_bytes
    assert plan.streamed_bytes + plan.total_resident_bytes >= sum(r.nbytes for r in reads)
    for w in plan.weights:  # every weight lies inside its buffer
        g = next(g for g in plan.groups if g.key == w.group)
        lo, hi = g.stream_range if w.location == "arena" else g.resident_range
        assert lo <= w.offset and w.offset + w.nbytes <= hi
    for name, size in plan.arena_bytes:
        assert all(g.arena_offset + g.streamed_bytes <= size for g in plan.streamed if g.dtype == name)


def test_groups_ordered_by_first_use():
    reads = blocks([[1024]] * 3)
    shuffled = [WeightRead(r.input_index, r.group, r.offset, r.nbytes, r.shape, r.stride, 100 - r.first_use,
                           100 - r.first_use + 1) for r in reads]
    plan = make_plan(shuffled, ChunkFlowConfig(chunk_size=1024))
    assert [g.key for g in plan.groups] == ["blocks.2:float32", "blocks.1:float32", "blocks.0:float32"]


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_summary_in_json(fraction):
    plan = make_plan(blocks([[1024] * 2] * 2), ChunkFlowConfig(chunk_size=1024, resident_fraction=fraction))
    s = plan.to_json()["summary"]
    assert s["chunks"] == 4 and s["resident_chunks"] == int(4 * fraction)
    assert s["arena_bytes"] == plan.total_arena_bytes and s["host_bytes"] == 2 * 2048
