"""Rewards computed beside sampling: judges in worker processes, fed chunk by chunk while the policy samples on.

    pool = RewardPool(ocr=("rapidocr",), workers=1)
    pending = [pool.submit(chunk) for chunk in chunks]  # returns at once; workers judge while the caller samples
    parts = RewardPool.gather(pending)                   # {"ocr": [...], "alignment": [...], "consistency": [...]}

Each worker builds its judges once (`_init`). A judge that raises on one image gives NaN for that rollout (the reward
functions catch it); a worker that dies takes its whole chunk to NaN. Either way `combine` excludes and counts the
rollouts, and the GRPO stage drops their groups: a failure is never read as a reward of 0. workers=0 judges in the
calling process when the chunk is submitted (no overlap; for tests and debugging).
"""

from __future__ import annotations

import math
import multiprocessing

from xomni.rewards import Rollout, alignment, ocr_accuracy, token_consistency

COMPONENTS = ("ocr", "alignment", "consistency")
_JUDGES: dict = {}


def _init(ocr: tuple[str, ...]) -> None:
    import torch

    from xomni.eval.ocr import make_ocr_judge
    from xomni.eval.scene_judge import SceneJudge

    torch.set_num_threads(1)
    _JUDGES["ocr"] = [make_ocr_judge(e) for e in ocr]
    _JUDGES["scene"] = SceneJudge()


def _score(rollouts: list[Rollout]) -> dict[str, list]:
    return {"ocr": ocr_accuracy(rollouts, _JUDGES["ocr"]), "alignment": alignment(rollouts, _JUDGES["scene"]),
            "consistency": token_consistency(rollouts)}


class _Done:
    """A finished result with AsyncResult's `get` (workers=0)."""

    def __init__(self, value):
        self.value = value

    def get(self, timeout=None):
        return self.value


class RewardPool:
    def __init__(self, ocr: tuple[str, ...] = ("rapidocr",), workers: int = 1):
        from xomni.eval.ocr import make_ocr_judge

        for engine in ocr:  # fail here, in the caller, with the clear message, if an engine is missing
            make_ocr_judge(engine)
        self.pool = None
        if workers > 0:
            self.pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init, initargs=(tuple(ocr),))
        else:
            _init(tuple(ocr))

    def submit(self, rollouts: list[Rollout]):
        """Start judging a chunk; returns a handle for `gather`."""
        if self.pool is None:
            return (len(rollouts), _Done(_score(rollouts)))
        return (len(rollouts), self.pool.apply_async(_score, (rollouts,)))

    @staticmethod
    def gather(pending: list, timeout: float = 600.0) -> tuple[dict[str, list], int]:
        """Every chunk's components, concatenated in submission order, and how many chunks failed whole."""
        parts: dict[str, list] = {k: [] for k in COMPONENTS}
        failed_chunks = 0
        for n, handle in pending:
            try:
                got = handle.get(timeout)
            except Exception:  # noqa: BLE001 - a crashed or hung worker: the chunk's rewards are failures
                got = {k: [math.nan] * n for k in COMPONENTS}
                failed_chunks += 1
            for k in COMPONENTS:
                parts[k] += got[k]
        return parts, failed_chunks

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None

    def __enter__(self) -> "RewardPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
