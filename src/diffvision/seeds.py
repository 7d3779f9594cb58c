"""Seeds derived from several integers (a run's seed and a step, a batch, a rank), so each part
of a run draws its own reproducible noise whatever ran before it."""

from __future__ import annotations

import numpy as np

#: The largest seed: torch's generators take 64-bit seeds, NumPy's SeedSequence non-negative ones.
MAX_SEED = 2**63 - 1


def derived_seed(*parts: int) -> int:
    """A 32-bit seed from the integers ``parts`` (NumPy's SeedSequence: different tuples give
    unrelated streams, unlike ``seed + step``, where (0, 1) and (1, 0) would collide)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])
