"""The kept-sorted ready queue (policies with a ``static_key``), triage's two queues and preempt's cached key parts
place exactly as sorting the whole backlog with ``key`` at every event did; edf-triage."""

import json
import math

import pytest

from cfcompile.elastic.serving import (EDFBestFit, MemoryAware, Preemptive, Request, SimConfig, StaticSP,
                                       generate_workload, simulate)
from cfcompile.elastic.serving.planned import shipped_costs
from cfcompile.elastic.serving.policies import FCFS, SRTF, ElasticPolicy


def _sorted_every_event(cls, **kw):
    """``cls(**kw)`` with its queue sorted at every call: the reference the kept-sorted queues must match."""
    name = cls(**kw).name
    triage = kw.pop("triage", cls is MemoryAware)
    if issubclass(cls, EDFBestFit) and cls is not Preemptive:
        kw["triage"] = False  # a key overridden without static_key refuses triage: set it after construction

    class Ref(cls):
        def key(self, task, view):  # overridden without static_key: sorted at every call
            return cls.key(self, task, view)

        def _added(self, task, view):
            if getattr(self, "triage", False):
                ElasticPolicy._added(self, task, view)  # no triage heap
                if self.latest_start(task, view) < math.inf:
                    self._track(task, view)  # the slack's bookkeeping, shared
            else:
                super()._added(task, view)

        def ordered(self, view):
            if not self.triage:
                return super().ordered(view)
            now = view.now
            late = sorted((t for t in self.ready.values() if now > self.latest_start(t, view)),
                          key=lambda t: cls.key(self, t, view))
            for t in late:
                if self._live.get(t.request) == t.id:
                    del self._live[t.request]
            left = self.slack_s(view)
            behind = set()
            for t in late:  # the first late ones whose remaining work fits the slack together keep their EDF place
                if behind or self.hold_s(t, view) > left:
                    behind.add(t.id)
                else:
                    left -= self.hold_s(t, view)
            return sorted(self.ready.values(), key=lambda t: (t.id in behind, cls.key(self, t, view)))

    ref = Ref(**kw)
    ref.triage, ref.name = triage, name
    assert ref._static is False
    return ref


@pytest.fixture(scope="module")
def overload():
    costs = shipped_costs("H100")
    return generate_workload("gfdit:qwen-image", gpus=4, minutes=4, load=1.3, seed=3, costs=costs), costs


@pytest.mark.parametrize("cls, kw", [(StaticSP, {"k": 2}), (FCFS, {}), (SRTF, {}), (EDFBestFit, {}),
                                     (EDFBestFit, {"triage": True}), (MemoryAware, {}),
                                     (MemoryAware, {"triage": False}), (Preemptive, {"aging_s": 20.0})])
def test_kept_sorted_queue_places_as_sorting_every_event(cls, kw, overload):
    fast, ref = cls(**kw), _sorted_every_event(cls, **kw)
    assert fast.triage == ref.triage if hasattr(fast, "triage") else True
    assert fast._static or cls is Preemptive  # preempt's key changes with the time: sorted, its fixed parts kept
    reqs, costs = overload
    a, b = simulate(reqs, 4, fast, costs), simulate(reqs, 4, ref, costs)
    assert json.dumps(a.summary, sort_keys=True) == json.dumps(b.summary, sort_keys=True)
    assert [(r.task.id, r.task.group, r.start_s) for r in a.records] == [(r.task.id, r.task.group, r.start_s)
                                                                         for r in b.records]


def test_edf_triage_puts_hopeless_requests_last(overload):
    reqs, costs = overload
    edf, tri = simulate(reqs, 4, "edf", costs), simulate(reqs, 4, "edf-triage", costs)
    assert tri.policy == "edf-triage" and tri.summary["completed"] == len(reqs)  # late ones still finish
    assert tri.summary["slo_attainment"] > edf.summary["slo_attainment"]  # the domino effect, cut
    with pytest.raises(ValueError, match="triage needs the EDF key"):
        class Mine(EDFBestFit):
            def key(self, task, view):
                return (view.now, task.id)
        Mine(triage=True)


@pytest.mark.parametrize("policy", ["edf-triage", "memory-aware"])
def test_triage_reorders_only_where_a_slack_is_shorter_than_the_late_task(policy):
    # One GPU, both at t=0: "late" (512², deadline 0.1 s: no degree makes it) and "other" (1024²). Where other's
    # slack (deadline - now - its time on the GPU) is longer than all of late's remaining work, putting late last
    # moves work around and saves nobody: late keeps its EDF place and finishes first (before serving17 other ran
    # first, and at load 0.8 on 64 GPUs such moves cost 2-3 requests of 4,800). Where other's slack is shorter,
    # late goes last, as before.
    costs = shipped_costs("H100")
    m = costs.model("qwen-image")
    other = Request("other", "qwen-image", 1024, 1024)
    alone = m.request_ms(other, 1) / 1e3
    first = {}
    for slack in (100.0, 0.01):
        reqs = [Request("late", "qwen-image", 512, 512, deadline_s=0.1),
                Request("other", "qwen-image", 1024, 1024, deadline_s=alone + slack)]
        res = simulate(reqs, 1, policy, costs, SimConfig(mem_gb=80.0))
        assert res.summary["completed"] == 2
        first[slack] = min(res.finish_s, key=res.finish_s.get)
    assert first == {100.0: "late", 0.01: "other"}
