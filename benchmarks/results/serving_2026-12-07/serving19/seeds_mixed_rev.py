"""The control policy of serving19 (edf with its rank tie-break reversed), importable (seeds_mixed.py defines the same)."""
from cfcompile.elastic.serving.policies import EDFBestFit


class EDFRev(EDFBestFit):
    name = "edf-rev"

    def _rest_key(self, task, view, taken):
        return lambda g: (taken.get(g, 0), -g)
