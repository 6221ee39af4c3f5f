"""serving25: memory-aware's wait rule (wait="expected") under prediction error: the wait margin and the wake-up
at a task's predicted end (``overrun="wake"``)."""

import pytest

from cfcompile.elastic.serving import Request, SimConfig, simulate
from cfcompile.elastic.serving import simulator as S
from cfcompile.elastic.serving.policies import MemoryAware

# serving22's case (tests/test_serving_policies.py): 2 GPUs; a (512², loose deadline) runs chunk after chunk on GPU 0;
# L (1536²: 78 s at SP 1, 44.36 s at SP 2) arrives at 2.0 s with 1.5 s of slack over SP 2. When L's prepare is
# first (2.04 s) only GPU 1 is free; a's chunk a/denoise[10:15] (task 4) on GPU 0 is predicted to end at 2.376 s,
# before L's latest start at SP 2: under predictions the rule waits for SP 2 and L meets.
A = Request("a", "qwen-image", 512, 512, arrival_s=0.0, deadline_s=200.0)
L = Request("L", "qwen-image", 1536, 1536, arrival_s=2.0, deadline_s=2.0 + 44.36 + 1.5)


def _overrun(factor):
    """duration_factor: a's task 4 (the chunk L waits for) runs ``factor`` x its prediction, every other task
    exactly its prediction."""
    return lambda sigma, seed, rid, index: factor if (rid, index) == ("a", 4) else 1.0


def _first(res, rid, kind="prepare"):
    return next(r for r in res.records if r.task.request == rid and r.task.kind == kind)


def test_wake_gives_up_a_wait_once_the_awaited_task_runs_past_its_predicted_end(monkeypatch):
    cfg = SimConfig(duration_error=0.1)  # any sigma > 0: the factors are the patched ones
    # exact predictions: every overrun option waits for SP 2 and meets, identically (no task overruns, no wake-up)
    monkeypatch.setattr(S, "duration_factor", _overrun(1.0))
    runs = [simulate([A, L], 2, MemoryAware(overrun=o, wait_margin=0.0), config=cfg) for o in ("now", "skip", "wake")]
    for res in runs:
        assert len(_first(res, "L").task.group) == 2 and res.summary["slo_attainment"] == 1.0
    assert runs[0].records == runs[1].records == runs[2].records
    # a's chunk runs 20 x its prediction (0.775 s -> 15.5 s, ends at 17.1 s instead of 2.376 s)
    monkeypatch.setattr(S, "duration_factor", _overrun(20.0))
    ran = {o: simulate([A, L], 2, MemoryAware(overrun=o, wait_margin=0.0), config=cfg) for o in ("now", "skip", "wake")}
    chunk = next(r for r in ran["now"].records if r.task.id == "a/denoise[10:15]")
    predicted_end = chunk.start_s + (chunk.end_s - chunk.start_s) / 20.0
    assert chunk.end_s > 17.0 and predicted_end == pytest.approx(2.376, abs=1e-3)
    # "now" (the default before serving25): GPU 0 past its predicted end counts as free now, and nothing re-asks
    # the policy before a's chunk really ends: GPU 1 sits idle for 15 s while L waits for nothing
    # "skip": a GPU past its predicted end is not counted, but with no event at the predicted end the policy is
    # only asked again at a's real end: the same here
    for o in ("now", "skip"):
        assert _first(ran[o], "L").start_s == pytest.approx(chunk.end_s, abs=0.01), o  # after a 2 ms reshard
    # "wake": the simulator emits an event at the predicted end of a task that overruns it; GPU 0 is then past its
    # prediction, no wider group is expected, and L starts at once on the free GPU
    first = _first(ran["wake"], "L")
    assert first.start_s == pytest.approx(predicted_end) and first.task.group == (1,)
    assert all(r.finish_s["L"] > L.deadline_s for r in ran.values())  # 15 s late to SP 2, or 78 s at SP 1: misses either way
    # deterministic
    again = simulate([A, L], 2, MemoryAware(overrun="wake", wait_margin=0.0), config=cfg)
    assert again.records == ran["wake"].records and again.finish_s == ran["wake"].finish_s


def test_wake_events_only_for_a_policy_that_asks_for_them(monkeypatch):
    # the simulator asks a policy at a task's predicted end only if the policy sets wake_on_overrun (only
    # MemoryAware(overrun="wake") does): memory-aware with overrun="now" is not asked at a's chunk's predicted end
    monkeypatch.setattr(S, "duration_factor", _overrun(20.0))
    cfg = SimConfig(duration_error=0.1)
    calls = []

    class Counting(MemoryAware):
        def on_tasks_runnable(self, tasks, view):
            calls.append((self.wake_on_overrun, view.now))
            return super().on_tasks_runnable(tasks, view)

    simulate([A, L], 2, Counting(overrun="now", wait_margin=0.0), config=cfg)
    simulate([A, L], 2, Counting(overrun="wake", wait_margin=0.0), config=cfg)
    now = sorted(t for w, t in calls if not w)
    wake = sorted(t for w, t in calls if w)
    assert any(t == pytest.approx(2.376, abs=1e-3) for t in wake)
    assert not any(t == pytest.approx(2.376, abs=1e-3) for t in now)


def test_wait_margin_waits_only_with_slack_to_spare():
    # L's slack over SP 2 is 1.5 s against a 0.34 s wait and 44.36 s of work. A margin m prices the wait and the
    # run (1 + m) x their predictions: m = 0.02 adds 0.9 s (still waits, meets), m = 0.1 adds 4.5 s (does not
    # wait: starts at once on the one free GPU)
    for m, waits in ((0.0, True), (0.02, True), (0.1, False)):
        res = simulate([A, L], 2, MemoryAware(wait_margin=m))
        first = _first(res, "L")
        assert (len(first.task.group) == 2) == waits, m
        assert (res.summary["slo_attainment"] == 1.0) == waits, m
    for bad in (-0.1, float("inf"), float("nan"), True, "0.1"):
        with pytest.raises(ValueError, match="wait_margin"):
            MemoryAware(wait_margin=bad)
    with pytest.raises(ValueError, match="overrun"):
        MemoryAware(overrun="later")
