"""Errors a user can act on: the CLI prints them as one line and exits with status 2."""


class MissingPart(RuntimeError):
    """Something the command needs is not installed or not there yet (an OCR engine, judge weights, a model)."""


def check_at_least(cfg, minimum: int, *names: str) -> None:
    """A clear error naming every one of `cfg`'s fields `names` below `minimum`, as its flag: for a stage to call
    before it writes anything (a zero step count or batch would fail later, after its first checkpoint or log)."""
    bad = [f"--{n.replace('_', '-')} {getattr(cfg, n)}" for n in names if getattr(cfg, n) < minimum]
    if bad:
        raise ValueError(f"{', '.join(bad)}: must be at least {minimum}")
