"""cfcompile.elastic: logical groups and their collectives (gloo ranks via tests/dist_harness.py)."""

import pytest
import torch
import torch.distributed as dist

from cfcompile.elastic import LogicalGroup, all_gather, all_to_all, barrier, form_group, recv, send
from dist_harness import forbid_new_groups, run_distributed  # tests/ is on sys.path (rootdir conftest)

GROUPS = [(0, 1), (1, 3), (2, 0, 3)]


# --- single process: LogicalGroup ---------------------------------------------------------------------------

def test_group_basics():
    g = LogicalGroup((2, 0, 3))
    assert g.size == 3 and g.rank_in_group(0) == 1 and 3 in g and 1 not in g
    with pytest.raises(ValueError, match="global rank 1 is not a member"):
        g.rank_in_group(1)
    assert form_group([1, 3], world_size=4) == LogicalGroup((1, 3))


@pytest.mark.parametrize("ranks, exc, msg", [
    ((), ValueError, "empty"),
    ((0, 1, 0), ValueError, r"distinct, \[0\] appear more than once"),
    ((0, -1), ValueError, "non-negative"),
    ((0, 1.0), TypeError, "must be ints"),
    ((0, True), TypeError, "must be ints"),
    ("01", TypeError, "must be a tuple"),
])
def test_group_validation(ranks, exc, msg):
    with pytest.raises(exc, match=msg):
        LogicalGroup(ranks)


def test_group_world_check():
    with pytest.raises(ValueError, match=r"ranks \[4\] are not in the world of 4 ranks"):
        form_group((0, 4), world_size=4)
    if not dist.is_initialized():
        with pytest.raises(RuntimeError, match="not initialised"):
            form_group((0, 1))


def test_group_frozen():
    with pytest.raises(Exception):
        LogicalGroup((0,)).ranks = (1,)


# --- distributed workers (module level: spawned) ------------------------------------------------------------

def _split_matrix(n, unequal):
    """rows member i sends to member j (zeros included when unequal)."""
    return [[(i + 2 * j) % 3 if unequal else 2 for j in range(n)] for i in range(n)]


def _chunk(src_rank, dst_member, rows):
    return torch.arange(rows, dtype=torch.float32)[:, None] + 100 * src_rank + 10 * dst_member + \
        torch.arange(3, dtype=torch.float32) * 0.25


def _a2a_case(rank, group, unequal):
    """(output, reference) for this rank, or None if not a member."""
    g = form_group(group)
    if rank not in g:
        assert all_to_all(torch.zeros(4, 3), g) is None
        return None
    n, i = g.size, g.rank_in_group(rank)
    S = _split_matrix(n, unequal)
    x = torch.cat([_chunk(rank, j, S[i][j]) for j in range(n)])
    ref = torch.cat([_chunk(g.ranks[j], i, S[j][i]) for j in range(n)])
    if unequal:
        out = all_to_all(x, g, output_split_sizes=[S[j][i] for j in range(n)], input_split_sizes=S[i])
    else:
        out = all_to_all(x, g)
    return out, ref


def _gather_case(rank, group):
    g = form_group(group)
    x = torch.full((2, 3), float(rank)) + torch.arange(2.0)[:, None]
    out = all_gather(x, g)
    if rank not in g:
        assert out is None
        return None
    ref = torch.cat([torch.full((2, 3), float(r)) + torch.arange(2.0)[:, None] for r in g.ranks])
    return out, ref


def _collectives_worker(rank, world):
    forbid_new_groups()
    checked = 0
    for group in [gr for gr in GROUPS if max(gr) < world]:
        for unequal in (False, True):
            res = _a2a_case(rank, group, unequal)
            if res is not None:
                torch.testing.assert_close(*res, rtol=0, atol=0)
                checked += 1
        res = _gather_case(rank, group)
        if res is not None:
            torch.testing.assert_close(*res, rtol=0, atol=0)
            checked += 1
        barrier(form_group(group))
    return checked


@pytest.mark.timeout(300)
@pytest.mark.parametrize("world", [2, 4])
def test_all_to_all_all_gather(world):
    checked = run_distributed(_collectives_worker, world, timeout=240)
    # members of each group check 2 all_to_alls + 1 all_gather
    expect = [sum(3 for gr in GROUPS if max(gr) < world and r in gr) for r in range(world)]
    assert checked == expect


def _overlap_send_worker(rank, world):
    forbid_new_groups()
    # overlapping groups back to back, several rounds, unequal splits: ranks 1, 2 are in both
    for _ in range(3):
        for group in ((0, 1, 2), (1, 2, 3)):
            res = _a2a_case(rank, group, unequal=True)
            if res is not None:
                torch.testing.assert_close(*res, rtol=0, atol=0)
            res = _gather_case(rank, group)
            if res is not None:
                torch.testing.assert_close(*res, rtol=0, atol=0)
    # move a request's tensor from rank 3 to rank 1 and back
    got = None
    payload = torch.arange(12.0).reshape(3, 4) + 7
    if rank == 3:
        send(payload, 1)
        got = recv(torch.empty(3, 4), 1)
    elif rank == 1:
        got = recv(torch.empty(3, 4), 3)
        send(got * 2, 3)
    barrier(form_group(range(world)))
    return got


@pytest.mark.timeout(300)
def test_overlapping_groups_and_send_recv():
    out = run_distributed(_overlap_send_worker, 4, timeout=240)
    payload = torch.arange(12.0).reshape(3, 4) + 7
    assert out[0] is None and out[2] is None
    torch.testing.assert_close(out[1], payload)
    torch.testing.assert_close(out[3], payload * 2)


def _non_member_worker(rank, world):
    forbid_new_groups()
    g = form_group((0, 1))
    saved = {}
    if rank not in g:  # any communication from a non-member trips
        def boom(*a, **k):
            raise AssertionError(f"rank {rank} (non-member) called into torch.distributed")
        for name in ("isend", "irecv", "send", "recv", "batch_isend_irecv", "barrier", "all_to_all_single",
                     "all_gather_into_tensor", "all_gather", "broadcast", "all_reduce"):
            saved[name] = getattr(dist, name)
            setattr(dist, name, boom)
    try:
        a = all_to_all(torch.full((4, 2), float(rank)), g)
        b = all_gather(torch.full((1, 2), float(rank)), g)
        barrier(g)
    finally:
        for name, fn in saved.items():
            setattr(dist, name, fn)
    dist.barrier()  # everyone still talks afterwards
    return a, b


@pytest.mark.timeout(300)
def test_non_members_do_nothing():
    res = run_distributed(_non_member_worker, 4, timeout=240)
    assert res[2] == (None, None) and res[3] == (None, None)
    torch.testing.assert_close(res[0][0], torch.tensor([[0.0, 0], [0, 0], [1, 1], [1, 1]]))
    torch.testing.assert_close(res[1][1], torch.tensor([[0.0, 0], [1, 1]]))


def _bad_args_worker(rank, world):
    errors = []
    for call in (lambda: all_to_all(torch.zeros(3, 2), form_group((0, 1))),
                 lambda: all_to_all(torch.zeros(4, 2), form_group((0, 1)), input_split_sizes=[1, 2],
                                    output_split_sizes=[2, 2]),
                 lambda: send(torch.zeros(1), rank),
                 lambda: all_to_all(torch.zeros(2), LogicalGroup((0, 5)))):
        try:
            call()
        except (ValueError, TypeError) as e:
            errors.append(str(e))
    return errors


@pytest.mark.timeout(300)
def test_bad_arguments():
    errs = run_distributed(_bad_args_worker, 2, timeout=240)[0]
    assert len(errs) == 4
    assert "does not divide into 2 equal parts" in errs[0]
    assert "sum to 3, but input has 4 rows" in errs[1]
    assert "is this rank" in errs[2]
    assert "ranks [5] are not in the world of 2 ranks" in errs[3]
