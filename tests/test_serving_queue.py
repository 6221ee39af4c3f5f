"""The kept-sorted ready queue (policies with a ``static_key``), triage's two queues and preempt's cached key parts
place exactly as sorting the whole backlog with ``key`` at every event did; edf-triage."""

import json

import pytest

from cfcompile.elastic.serving import EDFBestFit, MemoryAware, Preemptive, StaticSP, generate_workload, simulate
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
            else:
                super()._added(task, view)

        def ordered(self, view):
            if not self.triage:
                return super().ordered(view)
            return sorted(self.ready.values(),
                          key=lambda t: (view.now > self.latest_start(t, view), cls.key(self, t, view)))

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
