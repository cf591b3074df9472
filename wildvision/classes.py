"""Which of a binary model's two classes is which, said once for every module that reads class names or outputs.

A model's `class_names` are [negative, positive] (e.g. ["wild", "captive"]), in the order of its outputs: the
positive class is what a flag means, and every probability, map and decision is about it. Kept apart from
torch so that screening's job and review code can ask without loading a model.
"""

from __future__ import annotations

from collections.abc import Sequence

POSITIVE = 1  # index of the positive class in class_names and in a model's outputs
NEGATIVE = 1 - POSITIVE


def positive_class(class_names: Sequence[str]) -> str:
    """The class a flag means (e.g. captive)."""
    return class_names[POSITIVE]


def negative_class(class_names: Sequence[str]) -> str:
    """The other class (e.g. wild): an animal in the wild or anything else."""
    return class_names[NEGATIVE]
