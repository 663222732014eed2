"""The learning-rate schedule every training stage uses: a linear warm-up, then a half cosine down to a floor."""

import math


def warmup_cosine(step: int, steps: int, warmup: int, peak: float, floor: float) -> float:
    """The learning rate at `step` (0-based) of a run of `steps`: linear warm-up to `peak` over the first `warmup`
    steps, then a half cosine from `peak` down to `floor * peak` at `steps`. The warm-up takes at most half the run
    (a run shorter than twice its warm-up warms up over its first half), so every run decays as far as it asks: a
    40-step run with the default 50 warm-up steps ended at 0.8 x peak, its floor never reached."""
    warmup = min(warmup, steps // 2)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
