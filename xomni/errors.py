"""Errors a user can act on: the CLI prints them as one line and exits with status 2."""


class MissingPart(RuntimeError):
    """Something the command needs is not installed or not there yet (an OCR engine, judge weights, a model)."""
