"""Errors a user can act on: the CLI prints them as one line and exits with status 2."""

import math


class MissingPart(RuntimeError):
    """Something the command needs is not installed or not there yet (an OCR engine, judge weights, a model)."""


def check_at_least(cfg, minimum: int, *names: str) -> None:
    """A clear error naming every one of `cfg`'s fields `names` below `minimum`, as its flag: for a stage to call
    before it writes anything (a zero step count or batch would fail later, after its first checkpoint or log)."""
    bad = [f"--{n.replace('_', '-')} {getattr(cfg, n)}" for n in names if getattr(cfg, n) < minimum]
    if bad:
        raise ValueError(f"{', '.join(bad)}: must be at least {minimum}")


def parse_shares(spec: str, names: tuple[str, ...], flag: str) -> dict[str, float]:
    """"a=0.3,b=0.7" -> each name's share (normalised to sum 1), for a flag `flag` whose spec must name every one of
    `names` once, so that a share left at 0 is a choice rather than a typo."""
    shares: dict[str, float] = {}
    for part in spec.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in names or name in shares:
            raise ValueError(f"{flag}: {name!r} is not one of {names} (each once), in {spec!r}")
        try:
            shares[name] = float(value)
        except ValueError:
            raise ValueError(f"{flag}: {part!r} is not name=share") from None
        if not math.isfinite(shares[name]) or shares[name] < 0:
            raise ValueError(f"{flag}: share {value!r} of {name!r} must be a number >= 0")
    missing = [n for n in names if n not in shares]
    if missing or not sum(shares.values()):
        raise ValueError(f"{flag} {spec!r}: name every one of {names} with a share, not all 0 (missing: {missing})")
    total = sum(shares.values())
    return {n: shares[n] / total for n in names}
