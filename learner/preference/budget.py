"""The label budget and schedule of the preference mode (PEBBLE's "total feedback" and query schedule).

:class:`LabelBudget` says how many pairs to send to the labeller at each point of a run: an optional warm-up
batch of ``warmup_labels`` before the first PPO iteration, then ``pairs_per_iteration`` after every
``label_every``-th iteration, until ``max_labels`` pairs were asked in all (0 = no cap). A *label* is one pair
asked, whatever the answer (``none`` and failures count: the labeller was queried). :meth:`LabelBudget.check`
refuses, before anything starts, a budget or schedule that cannot be met: one that never asks a label in
``train.iterations`` (the reward model would never train), a warm-up larger than the cap, a cap the schedule
can never reach, or a cap too small to leave one training pair after the held-out share.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LabelBudget:
    """How many pairs to label when (see module doc)."""

    pairs_per_iteration: int
    label_every: int = 1
    max_labels: int = 0
    warmup_labels: int = 0

    @classmethod
    def from_config(cls, p) -> "LabelBudget":
        return cls(int(p.pairs_per_iteration), int(p.label_every), int(p.max_labels), int(p.warmup_labels))

    def planned(self, iterations: int) -> int:
        """Pairs the schedule asks over ``iterations`` PPO iterations, warm-up included, before the cap."""
        return int(self.warmup_labels) + int(self.pairs_per_iteration) * (int(iterations) // int(self.label_every))

    def check(self, iterations: int, heldout_fraction: float = 0.0) -> None:
        """Raise ValueError with the reason when this budget / schedule cannot be met in ``iterations``."""
        for name in ("pairs_per_iteration", "max_labels", "warmup_labels"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"preference.{name} must be >= 0, got {getattr(self, name)}")
        if int(self.label_every) < 1:
            raise ValueError(f"preference.label_every must be >= 1, got {self.label_every}")
        planned = self.planned(iterations)
        if planned < 1:
            raise ValueError(f"the label schedule asks no labels in train.iterations={iterations} "
                             f"(preference.pairs_per_iteration={self.pairs_per_iteration}, label_every={self.label_every}, "
                             f"warmup_labels={self.warmup_labels}): the reward model would never train")
        cap = int(self.max_labels)
        if cap > 0:
            if self.warmup_labels > cap:
                raise ValueError(f"preference.warmup_labels={self.warmup_labels} exceeds the label budget "
                                 f"preference.max_labels={cap}")
            if planned < cap:
                raise ValueError(f"preference.max_labels={cap} cannot be reached: the schedule asks at most {planned} "
                                 f"labels in train.iterations={iterations} (warm-up {self.warmup_labels} + "
                                 f"{self.pairs_per_iteration} every {self.label_every} iteration(s)); raise "
                                 f"pairs_per_iteration or lower max_labels")
            if cap * (1.0 - float(heldout_fraction)) < 1.0:
                raise ValueError(f"preference.max_labels={cap} leaves no training pair after "
                                 f"preference.heldout_fraction={heldout_fraction}")

    def due(self, iteration: int, used: int) -> int:
        """Pairs to ask after PPO iteration ``iteration`` (1-based) when ``used`` were asked so far."""
        if int(iteration) % int(self.label_every):
            return 0
        return self._capped(int(self.pairs_per_iteration), used)

    def warmup_due(self, used: int) -> int:
        """Pairs of the warm-up batch (before the first PPO iteration)."""
        return self._capped(int(self.warmup_labels), used)

    def _capped(self, n: int, used: int) -> int:
        if int(self.max_labels) > 0:
            n = min(n, int(self.max_labels) - int(used))
        return max(0, n)
