"""Property-based tests (hypothesis, derandomized): over weight sizes, chunk sizes, resident fractions, prefetch
depths and budgets the planners always produce a sound plan; over the options dict every invalid value or
combination raises the config's ValueError naming the option, and nothing else."""

import dataclasses
import os
import re
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from cfcompile import ChunkFlowConfig, MemoryBudget
from cfcompile.plan.layout import make_plan
from cfcompile.compiler.rewrite import ArenaLifetimeError, check_arena_lifetimes
from cfcompile.plan.search import BUDGET_HEADROOM, BudgetError, DeviceState, plan_with_model

from test_plan import blocks, live_overlaps
from test_tune import PROFILE, SPAN, costs

FAST = settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

sizes_st = st.lists(st.lists(st.integers(1, 5000).map(lambda n: 4 * n), min_size=1, max_size=5),
                    min_size=1, max_size=6)                      # float32 weights of 4 B .. 20 KB per block
chunk_st = st.integers(1, 64).map(lambda k: 256 * k)             # what the config accepts: multiples of 256


def lifetimes(plan) -> dict[int, list[tuple[int, float]]]:
    """The plan's own live spans in graph positions, as `apply_plan` hands them to `check_arena_lifetimes`: a
    group is live from the node its prefetch is issued before to its last read, and a wrapped group also from its
    issue in the tail to the end of the call."""
    st_ = plan.streamed
    out = {}
    for j, g in enumerate(st_):
        issue = st_[g.issue_before].first_use if g.issue_before is not None else -1
        out[j] = [(issue, g.last_use)] + ([(st_[g.wrap_before].first_use, 10**9)] if g.wrap_before is not None
                                          else [])
    return out


def check_plan(plan, reads) -> None:
    """Invariants every plan must hold, whatever made it."""
    cs = plan.chunk_size
    arena = dict(plan.arena_bytes)
    resident_size = dict(plan.resident_bytes)
    by_group = {}
    for r in reads:
        by_group.setdefault(r.group.key, []).append(r)
    assert {g.key for g in plan.groups} == set(by_group)
    weights = {w.input_index: w for w in plan.weights}
    assert set(weights) == {r.input_index for r in reads}
    resident_spans: dict[str, list] = {}
    for g in plan.groups:
        rs = by_group[g.key]
        lo, hi = min(r.offset for r in rs), max(r.offset + r.nbytes for r in rs)
        # chunks tile [lo, hi) of the group exactly once, each inside one chunk_size-aligned window
        chunks = [plan.chunks[c] for c in g.chunks]
        assert chunks[0].start == lo and chunks[-1].start + chunks[-1].nbytes == hi
        assert all(a.start + a.nbytes == b.start for a, b in zip(chunks, chunks[1:]))
        assert all(0 < c.nbytes <= cs and c.start // cs == (c.start + c.nbytes - 1) // cs for c in chunks)
        # every weight byte is resident or streamed, never both, never neither
        (r0, r1), (s0, s1) = g.resident_range, g.stream_range
        assert r1 <= s0 or s1 <= r0 or r0 == r1 or s0 == s1
        for r in rs:
            w = weights[r.input_index]
            inside_r = r0 <= r.offset and r.offset + r.nbytes <= r1
            inside_s = s0 <= r.offset and r.offset + r.nbytes <= s1
            assert inside_r != inside_s and w.location == ("resident" if inside_r else "arena")
            if inside_s:
                assert w.buffer_offset == g.arena_offset + r.offset - s0
            else:
                assert w.buffer_offset == g.resident_offset + r.offset - r0
        assert all(r0 <= c.start and c.start + c.nbytes <= r1 for c in chunks if c.resident)
        # the copies tile the streamed range exactly once, chunk by chunk, into the group's arena region
        if g.streamed_bytes:
            assert g.copies[0].src_offset == s0 and sum(c.nbytes for c in g.copies) == g.streamed_bytes
            assert all(a.src_offset + a.nbytes == b.src_offset for a, b in zip(g.copies, g.copies[1:]))
            for c in g.copies:
                ch = plan.chunks[c.chunk]
                assert ch.start <= c.src_offset and c.src_offset + c.nbytes <= ch.start + ch.nbytes
                assert c.dst_offset == g.arena_offset + c.src_offset - s0
            assert g.arena_offset % 256 == 0 and g.arena_offset + g.streamed_bytes <= arena[g.dtype]
        else:
            assert not g.copies and g.arena_offset == -1
        if g.resident_bytes:
            assert g.resident_offset + g.resident_bytes <= resident_size[g.dtype]
            resident_spans.setdefault(g.dtype, []).append((g.resident_offset, g.resident_offset + g.resident_bytes))
    for spans in resident_spans.values():      # resident weights of different groups never share bytes
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert plan.streamed_bytes + sum(g.resident_bytes for g in plan.groups) >= sum(r.nbytes for r in reads)
    # arena placements never overlap in time: the rewrite's own checker, and the plan-level one of test_plan
    check_arena_lifetimes(plan, lifetimes(plan))
    assert not live_overlaps(plan)


def test_the_lifetime_checker_catches_a_bad_placement():
    """check_plan leans on check_arena_lifetimes: it must reject two live groups put on the same bytes."""
    reads = blocks([[1024] * 4] * 4)
    plan = make_plan(reads, ChunkFlowConfig(chunk_size=1024))
    check_plan(plan, reads)
    bad = dataclasses.replace(plan, groups=tuple(dataclasses.replace(g, arena_offset=0) for g in plan.groups))
    with pytest.raises(ArenaLifetimeError, match="share arena bytes but are live at the same time"):
        check_arena_lifetimes(bad, lifetimes(bad))


@FAST
@given(sizes=sizes_st, chunk=chunk_st, fraction=st.floats(0, 1), depth=st.integers(0, 3), wrap=st.booleans())
def test_make_plan_is_sound(sizes, chunk, fraction, depth, wrap):
    reads = blocks(sizes)
    plan = make_plan(reads, ChunkFlowConfig(chunk_size=chunk, resident_fraction=fraction, prefetch_depth=depth,
                                            wrap_around=wrap))
    check_plan(plan, reads)
    n, resident = len(plan.chunks), sum(c.resident for c in plan.chunks)
    assert resident <= round(fraction * n) and (fraction < 1 or resident == n)
    if round(fraction * n) == 0:
        assert plan.total_resident_bytes == 0 and all(g.resident_bytes == 0 for g in plan.groups)


@FAST
@given(sizes=st.lists(st.lists(st.integers(1, 2000).map(lambda n: 4 * n), min_size=1, max_size=4), min_size=1,
                      max_size=5),
       chunk=st.integers(4, 32).map(lambda k: 256 * k), fraction=st.floats(0, 1),
       depth=st.one_of(st.just("auto"), st.integers(0, 3)), wrap=st.booleans(),
       block_us=st.lists(st.integers(0, 20), min_size=5, max_size=5))
def test_model_plan_with_a_resident_fraction_is_sound(sizes, chunk, fraction, depth, wrap, block_us):
    reads = blocks(sizes, span=SPAN)
    config = ChunkFlowConfig(chunk_size=chunk, resident_fraction=fraction, prefetch_depth=depth, wrap_around=wrap)
    plan, pred = plan_with_model(reads, config, costs([u / 1000 for u in block_us[:len(sizes)]]), PROFILE)
    check_plan(plan, reads)
    n, resident = len(plan.chunks), sum(c.resident for c in plan.chunks)
    assert resident <= round(fraction * n) and (fraction < 1 or resident == n)
    assert pred.resident_bytes == plan.total_resident_bytes and pred.arena_bytes == plan.total_arena_bytes


@FAST
@given(sizes=st.lists(st.lists(st.integers(1, 2000).map(lambda n: 4 * n), min_size=1, max_size=4), min_size=1,
                      max_size=5),
       chunk=st.one_of(st.just("auto"), st.integers(4, 32).map(lambda k: 256 * k)),
       budget=st.integers(1_000, 200_000), activations=st.integers(0, 20_000),
       depth=st.one_of(st.just("auto"), st.integers(0, 2)), block_us=st.lists(st.integers(0, 20), min_size=5,
                                                                             max_size=5))
def test_model_plan_under_a_budget_fits_it_or_names_the_minimum(sizes, chunk, budget, activations, depth, block_us):
    reads = blocks(sizes, span=SPAN)
    c = costs([u / 1000 for u in block_us[:len(sizes)]], activations=activations)
    config = ChunkFlowConfig(chunk_size=chunk, memory_budget=budget, prefetch_depth=depth)
    try:
        plan, pred = plan_with_model(reads, config, c, PROFILE)
        event("fits the budget")
    except BudgetError as e:
        event("budget too small")
        assert e.minimum_bytes > budget and "raise the budget to at least" in str(e)
        # the minimum it names is enough
        plan, pred = plan_with_model(reads, dataclasses.replace(config, memory_budget=e.minimum_bytes), c, PROFILE)
        budget = e.minimum_bytes
    check_plan(plan, reads)
    assert plan.total_resident_bytes + plan.total_arena_bytes + activations == pred.peak_bytes <= budget
    assert plan.memory_budget == budget


@FAST
@given(sizes=st.lists(st.lists(st.integers(1, 2000).map(lambda n: 4 * n), min_size=1, max_size=4), min_size=1,
                      max_size=5),
       chunk=st.integers(4, 32).map(lambda k: 256 * k), held_share=st.lists(st.floats(0, 1), min_size=5, max_size=5),
       budget=st.one_of(st.none(), st.integers(1_000, 200_000)), fraction=st.floats(0, 1),
       others=st.tuples(st.integers(0, 20_000), st.integers(0, 20_000), st.integers(0, 20_000)),
       block_us=st.lists(st.integers(0, 20), min_size=5, max_size=5))
def test_plans_keep_held_chunks_and_count_what_is_on_the_device(sizes, chunk, held_share, budget, fraction, others,
                                                                  block_us):
    """Over chunks another graph of the same weights keeps resident (a prefix of each group) and what a shared
    budget's other graphs hold: the plan is sound, reads every held weight from the device, and its prediction
    (what the device holds while it runs) fits the budget, or the error names a minimum that fits."""
    reads = blocks(sizes, span=SPAN)
    held = {}
    for b, block in enumerate(sizes):
        rs = [r for r in reads if r.group.name == f"blocks.{b}"]
        k = int(held_share[b] * len(rs))
        if k:
            held[rs[0].group.key] = (rs[0].offset, rs[k - 1].offset + rs[k - 1].nbytes)
    other, arena, act = others
    state = DeviceState(held, other, {"float32": arena}, act)
    c = costs([u / 1000 for u in block_us[:len(sizes)]], activations=2000)
    config = ChunkFlowConfig(chunk_size=chunk, memory_budget=budget) if budget else \
        ChunkFlowConfig(chunk_size=chunk, resident_fraction=fraction)
    try:
        plan, pred = plan_with_model(reads, config, c, PROFILE, state=state)
        event("fits")
    except BudgetError as e:
        event("budget too small")
        assert e.minimum_bytes > budget and "raise the budget to at least" in str(e)
        budget = e.minimum_bytes
        plan, pred = plan_with_model(reads, dataclasses.replace(config, memory_budget=budget), c, PROFILE,
                                     state=state)
    check_plan(plan, reads)
    where = {w.input_index: w.location for w in plan.weights}
    for r in reads:
        lo, hi = held.get(r.group.key, (0, 0))
        if lo <= r.offset and r.offset + r.nbytes <= hi:
            assert where[r.input_index] == "resident"
    # held bytes are counted once, inside this graph's resident bytes; the rest of the state adds as it should
    assert plan.total_resident_bytes >= sum((hi - lo + 255) // 256 * 256 for lo, hi in held.values())
    assert pred.resident_bytes == plan.total_resident_bytes + other
    assert pred.arena_bytes == max(plan.total_arena_bytes, arena)
    if budget:
        assert pred.peak_bytes + max(0, act - pred.activation_bytes) <= int(budget * (1 - BUDGET_HEADROOM))


# --- the options dict ------------------------------------------------------------------------------------------

bools = (st.booleans(), st.sampled_from([0, 1, "yes", None, 1.0]))
OPTIONS = {   # option: (valid values, invalid values)
    "chunk_size": (st.one_of(st.just("auto"), st.integers(1, 2**18).map(lambda k: 256 * k),
                             st.integers(1, 4096).map(lambda k: f"{k}KiB"),
                             st.integers(1, 64).map(lambda k: f"{k} MiB")),
                   st.one_of(st.integers(-10**6, 10**9).filter(lambda n: n % 256 or n <= 0),
                             st.sampled_from(["lots", "", "16 parsecs", True, [256], 1.5, "1.3KiB", None]))),
    "resident_fraction": (st.one_of(st.none(), st.floats(0, 1), st.sampled_from([0, 1])),
                          st.one_of(st.floats(allow_nan=True).filter(lambda v: not 0 <= v <= 1),
                                    st.sampled_from(["half", True, [0.5], -1, 2]))),
    "memory_budget": (st.one_of(st.none(), st.just("auto"), st.integers(1, 2**50),
                                st.sampled_from(["12GiB", "1.5 GiB", "512MB", "4096"]),
                                st.builds(MemoryBudget, st.integers(1, 2**50))),
                      st.sampled_from([0, -1, "a lot", True, [], "12 GiBs", 1.5, {}])),
    "prefetch_depth": (st.one_of(st.just("auto"), st.integers(0, 8)), st.sampled_from([-1, 1.0, True, "deep", None])),
    "profile": (st.one_of(st.none(), st.sampled_from(["H100", "cpu", "/tmp/p.json"])),
                st.sampled_from([3, 1.5, True, ["H100"]])),
    "collective_policy": (st.sampled_from(["auto", "yield", "overlap"]), st.sampled_from(["always", 1, None])),
    "schedule": (st.sampled_from(["chunkflow", "layerwise"]), st.sampled_from(["fast", None, 0])),
    "calibrate": bools, "shared_arena": bools, "wrap_around": bools, "overlap_copies": bools,
    "dump": (st.one_of(st.none(), st.just("/tmp/cf-dump")), st.sampled_from([3, b"/tmp", ["/tmp"]])),
    "inductor": (st.sampled_from([{}, {"max_autotune": False}, {"triton.cudagraphs": False}]),
                 st.sampled_from([3, {"not_an_option": 1}, {"post_grad_custom_post_pass": None},
                                  {"triton.cudagraphs": True}, {3: 1}, [("max_autotune", True)]])),
    "mode": (st.sampled_from(["default", "max-autotune-no-cudagraphs"]),
             st.sampled_from(["reduce-overhead", "max-autotune", "fast", 3])),
}


@st.composite
def option_dicts(draw):
    """Some options with valid values, then at most two of them (often none) given an invalid one instead: every
    check gets reached with everything before it valid."""
    keys = draw(st.lists(st.sampled_from(sorted(OPTIONS)), unique=True, max_size=len(OPTIONS)))
    bad = set(draw(st.lists(st.sampled_from(keys), unique=True, max_size=2))) if keys else set()
    out = {}
    for k in keys:
        valid, invalid = OPTIONS[k]
        out[k] = (draw(invalid), False) if k in bad else (draw(valid), True)
    return out


@settings(max_examples=100, deadline=None, derandomize=True)
@given(chosen=option_dicts(), unknown=st.one_of(st.none(), st.none(), st.none(),
                                                st.sampled_from(["chunksize", "budget", "resident"])))
def test_every_invalid_option_raises_a_value_error_naming_it(chosen, unknown):
    with mock.patch.dict(os.environ, {"CFCOMPILE_DUMP": ""}):
        check_options(chosen, unknown)


def check_options(chosen, unknown):
    options = {k: v for k, (v, _) in chosen.items()}
    wrong = {k for k, (_, ok) in chosen.items() if not ok}
    given_ = {k for k, v in options.items() if v is not None and k not in wrong}
    if {"resident_fraction", "memory_budget"} <= given_:
        wrong.add("resident_fraction")       # "resident_fraction and memory_budget cannot be used together"
    if options.get("schedule") == "layerwise" and "schedule" not in wrong and \
            given_ & {"resident_fraction", "memory_budget"} | ({"chunk_size"} if options.get("chunk_size", "auto")
                                                              != "auto" else set()):
        wrong.add("schedule")                # "schedule='layerwise' ... takes no resident_fraction, ..."
    if unknown:
        options[unknown] = 1
    event("valid" if not wrong and not unknown else "invalid")
    if not wrong and not unknown:
        config = ChunkFlowConfig.from_options(options)
        assert hash(config) == hash(ChunkFlowConfig.from_options(options))
        assert config.fingerprint() == ChunkFlowConfig.from_options(options).fingerprint()
        assert config.chunk_size == "auto" or config.chunk_size % 256 == 0
        return
    with pytest.raises(ValueError) as e:    # a ValueError, never a TypeError / AttributeError / KeyError
        ChunkFlowConfig.from_options(options)
    msg = str(e.value)
    if unknown:
        assert msg.startswith(f"unknown chunkflow option(s) ['{unknown}']; allowed: chunk_size")
    else:
        assert re.match(rf"({'|'.join(sorted(wrong))})\b", msg), (msg, wrong)
