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


def check_resumed_schedule(lr, saved_steps: int | None, steps: int, done: int) -> None:
    """A run resumed with another `--steps` must be the run it would have been uninterrupted with that many: the
    learning rates of the `done` steps it has taken must not depend on its length. `lr(step, steps)` is the stage's
    schedule (every parameter group's rates, as a tuple or a number). A cosine decay does depend on it (a resumed
    run would jump back up the curve), so that is refused with what to do instead; a constant rate past the warm-up
    may be extended."""
    if saved_steps is None or saved_steps == steps or done == 0 or done >= steps:  # (no step left to take)
        return
    for step in range(done):
        before, now = lr(step, saved_steps), lr(step, steps)
        if not all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(_tuple(before), _tuple(now))):
            raise ValueError(
                f"--steps {steps}: this run was planned for {saved_steps} steps and has taken {done}; its learning "
                f"rate at step {step} was {before} and would have been {now} in a run of {steps}, so resuming it "
                f"longer or shorter is not the run it continues. Resume it with --steps {saved_steps}, or start a "
                "new run from its weights (--init, and another --out).")


def _tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)
