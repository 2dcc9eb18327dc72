"""Independent random streams, each derived from the base seed and its purpose (spec §6).

Seed 0's initialisation and the augmentation plan used to come from two generators seeded with the same number, so
they drew the same random stream. Every stream is now derived by hashing (base seed, purpose, index): streams never
overlap, and the stamped base seed and seed count reproduce every one of them.
"""

from __future__ import annotations

import hashlib

__all__ = ["augmentation_seed", "initialisation_seed"]


def _derived(base_seed: int, purpose: str, index: int = 0) -> int:
    """A 63-bit seed for one stream; the same on every platform (a hash, not Python's salted ``hash``)."""
    digest = hashlib.sha256(f"clipasso/{purpose}/{base_seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def initialisation_seed(base_seed: int, run: int) -> int:
    """The seed of run ``run``'s saliency sampling and random walk."""
    return _derived(base_seed, "initialisation", run)


def augmentation_seed(base_seed: int) -> int:
    """The seed of the augmentation plan, which all runs of one sketch share (spec §6, ours)."""
    return _derived(base_seed, "augmentation")
