"""Adaptive evaluation for the scan: an evaluation of one (unit, ratio) stops as soon as its answer is clear, and the
ratios past a collapse are not evaluated at all.

Clear means one of two things, judged after each batch against the dense model's answers on the same samples:

- *the drop is known*: the share of samples on which pruned and dense disagree bounds the variance of the accuracy
  drop, so ``Z * sqrt(p / k)`` (``p`` the smoothed disagreement share over ``k`` samples) is the half-width of its
  confidence interval; once that is at most ``TOLERANCE``, more samples would not move the curve by more;
- *the unit has collapsed*: the accuracy's upper confidence bound is within ``COLLAPSE_MARGIN`` of chance (the
  share of the most frequent class), and every larger ratio of that unit is taken to be collapsed too (recorded with
  0 samples: not measured).

Where the drop is neither near zero nor at chance (the close answers), every sample is evaluated. A cell that
stopped early reports the dense figures on every sample plus the paired difference on the samples it saw
(:meth:`~pruner_core.sensitivity.engine.Evaluation.against`), so ratio 0 gives the dense figures exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

TOLERANCE = 0.01  # the half-width (accuracy, 95%) at which an evaluation may stop
Z = 1.96
COLLAPSE_MARGIN = 0.05  # an accuracy this close to chance (upper bound) is a collapse


@dataclass(frozen=True)
class Rule:
    """When an evaluation of the scan is clear enough to stop: the dense model's answers and chance."""

    dense: torch.Tensor  # bool per evaluation sample: the dense model was right
    chance: float  # the most frequent class's share of the evaluation samples

    @classmethod
    def for_labels(cls, dense: torch.Tensor, labels: torch.Tensor) -> Rule:
        counts = torch.bincount(labels.long())
        return cls(dense, float(counts.max()) / len(labels) if len(labels) else 0.0)

    def __call__(self, correct: torch.Tensor) -> bool:
        return self.drop_known(correct) or self.collapsed(correct)

    def drop_known(self, correct: torch.Tensor) -> bool:
        k = len(correct)
        disagree = int((self.dense[:k] != correct).sum())
        return Z * math.sqrt((disagree + 1) / (k + 2) / k) <= TOLERANCE

    def collapsed(self, correct: torch.Tensor) -> bool:
        k = len(correct)
        accuracy = float(correct.sum()) / k
        upper = accuracy + Z * math.sqrt(max(accuracy * (1 - accuracy), 1 / k) / k)
        return upper <= self.chance + COLLAPSE_MARGIN
