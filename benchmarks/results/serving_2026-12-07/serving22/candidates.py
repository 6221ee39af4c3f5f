"""serving21: the candidate rules as named policies for the scripts here (memory-aware with ``wait``).

    wait-all    memory-aware(wait="all"): no free group meets the deadline and the request is not late: a DiT task
                waits rather than start on any free group (serving20's ``wait``, on every pool)
    wait-chunk  memory-aware(wait="chunk"): it waits only rather than start on a group where even this task there
                and the rest at the best degree the pool could give misses the deadline
    wait-expected  memory-aware(wait="expected") (serving22): it waits only while a wider group is predicted to be
                free (view.free_at) before its latest start at that degree; otherwise it starts now
"""
from cfcompile.elastic.serving.policies import MemoryAware


def make(name):
    wait = {"wait-all": "all", "wait-chunk": "chunk", "wait-expected": "expected"}[name]
    p = MemoryAware(wait=wait)
    p.name = name
    return p
