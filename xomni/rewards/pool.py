"""Rewards computed beside sampling: judges in worker processes, fed chunk by chunk while the policy samples on.

    pool = RewardPool(ocr=("rapidocr",), workers=1, models={"hps": "/weights/hpsv2-clip"})
    pending = [pool.submit(chunk) for chunk in chunks]  # returns at once; workers judge while the caller samples
    parts, failed = pool.gather(pending)                # {"ocr": [...], "alignment": [...], "consistency": [...], "hps": [...]}

Each worker builds its judges once (`_init`); the OCR reward scores by `ocr_rule` (`xomni.rewards.ocr_accuracy`); the
model judges (xomni/rewards/judges.py: "hps", "vlm_alignment", "unified") load from the local folders in `models`. A
judge that raises on one image gives NaN for that rollout (the reward functions catch it); a worker that dies takes its
whole chunk to NaN. Either way `combine` excludes and counts the rollouts, and the GRPO stage drops their groups: a
failure is never read as a reward of 0. A worker that cannot build its judges (a model judge's folder whose weights do
not load) would fail every chunk alike, so that is `JudgeLoadError` from `gather`, which stops the run, rather than NaN
chunk after chunk (`multiprocessing.Pool` replaces a worker whose initializer raised, forever, and runs no task).
workers=0 judges in the calling process when the chunk is submitted (no overlap; for tests and debugging).
"""

from __future__ import annotations

import math
import multiprocessing

from xomni.rewards import OCR_RULES, Rollout, alignment, ocr_accuracy, token_consistency

BASE = ("ocr", "alignment", "consistency")
MODEL_JUDGES = ("hps", "vlm_alignment", "unified")
_JUDGES: dict = {}


class JudgeLoadError(RuntimeError):
    """A reward worker could not build its judges: no chunk can be judged."""


def _load_model_judge(name: str, path: str):
    from xomni.rewards import judges

    if name == "hps":
        return judges.HPSv2Reward(path)
    if name == "vlm_alignment":
        return judges.VLMAlignmentReward(path)
    if name == "unified":
        return judges.UnifiedRewardScore(path)
    raise ValueError(f"unknown model judge {name!r}; choose from {MODEL_JUDGES}")


def _init(ocr: tuple[str, ...], models: dict[str, str], ocr_rule: str, worker: bool = True) -> None:
    import torch

    from xomni.eval.ocr import make_ocr_judge
    from xomni.rewards import reward_judge

    if worker:  # a judge process takes one core; judging in the caller's process leaves its threads alone
        torch.set_num_threads(1)
    try:
        _JUDGES["ocr"] = [make_ocr_judge(e) for e in ocr]
        _JUDGES["ocr_rule"] = ocr_rule
        _JUDGES["scene"] = reward_judge()
        _JUDGES["models"] = {}
        for name, path in models.items():
            try:
                _JUDGES["models"][name] = _load_model_judge(name, path)
            except Exception as e:
                raise JudgeLoadError(f"the {name} judge did not load from {path}: {type(e).__name__}: {e}") from e
    except Exception as e:
        if not worker:
            raise
        # an initializer that raises kills the worker and the pool starts another: keep the error for every task
        _JUDGES["error"] = str(e) if isinstance(e, JudgeLoadError) else f"{type(e).__name__}: {e}"


def _score(rollouts: list[Rollout]) -> dict[str, list]:
    if "error" in _JUDGES:
        raise JudgeLoadError(f"a reward worker could not build its judges: {_JUDGES['error']}")
    out = {"ocr": ocr_accuracy(rollouts, _JUDGES["ocr"], _JUDGES["ocr_rule"]),
           "alignment": alignment(rollouts, _JUDGES["scene"]), "consistency": token_consistency(rollouts)}
    for name, judge in _JUDGES["models"].items():
        out[name] = judge(rollouts)
    return out


def gather(pending: list, components: tuple[str, ...] = BASE, timeout: float = 600.0,
           one_worker: bool = True) -> tuple[dict[str, list], int, bool]:
    """Every chunk's components, concatenated in submission order, how many chunks failed whole, and whether one
    timed out (a hung worker: `timeout` seconds for each chunk; after one, with `one_worker`, a chunk not finished
    yet is not waited for, since it queues behind the hung one)."""
    parts: dict[str, list] = {k: [] for k in components}
    failed_chunks, hung = 0, False
    for n, handle in pending:
        try:
            if hung and one_worker and not handle.ready():
                raise multiprocessing.TimeoutError
            got = handle.get(timeout)
        except JudgeLoadError:
            raise
        except Exception as e:  # noqa: BLE001 - a crashed or hung worker: the chunk's rewards are failures
            hung = hung or isinstance(e, multiprocessing.TimeoutError)
            got = {k: [math.nan] * n for k in components}
            failed_chunks += 1
        for k in components:
            parts[k] += got[k]
    return parts, failed_chunks, hung


class _Done:
    """A finished result with AsyncResult's `get` (workers=0)."""

    def __init__(self, value):
        self.value = value

    def get(self, timeout=None):
        return self.value

    def ready(self) -> bool:
        return True


class RewardPool:
    """`timeout`: the seconds `gather` waits for each chunk. A chunk that takes longer fails (NaN) and the workers
    are replaced, so that the hung or slow judging does not hold up the chunks submitted after it."""

    def __init__(self, ocr: tuple[str, ...] = ("rapidocr",), workers: int = 1, models: dict[str, str] | None = None,
                 ocr_rule: str = "longtext", timeout: float = 600.0):
        from xomni.eval.official_judges import _check_folder
        from xomni.eval.ocr import make_ocr_judge

        models = dict(models or {})
        if ocr_rule not in OCR_RULES:
            raise ValueError(f"OCR rule must be one of {OCR_RULES}, got {ocr_rule!r}")
        if not ocr:  # with no engine every text rollout would fail (NaN) and its group be dropped, silently
            raise ValueError("the reward pool needs at least one OCR engine (e.g. rapidocr)")
        for engine in ocr:  # fail here, in the caller, with the clear message, if an engine is missing
            make_ocr_judge(engine)
        for name, path in models.items():
            if name not in MODEL_JUDGES:
                raise ValueError(f"unknown model judge {name!r}; choose from {MODEL_JUDGES}")
            _check_folder(path, name)  # MissingPart now rather than a dead worker later
        if timeout <= 0:
            raise ValueError(f"the reward timeout must be positive, got {timeout}")
        self.components = BASE + tuple(models)
        self.workers, self.timeout, self.restarts = workers, timeout, 0
        self._initargs = (tuple(ocr), models, ocr_rule)
        self.pool = None
        if workers > 0:
            self._start()
        else:
            _init(*self._initargs, worker=False)

    def _start(self) -> None:
        self.pool = multiprocessing.get_context("spawn").Pool(self.workers, initializer=_init,
                                                              initargs=self._initargs)

    def submit(self, rollouts: list[Rollout]):
        """Start judging a chunk; returns a handle for `gather`."""
        if self.pool is None:
            return (len(rollouts), _Done(_score(rollouts)))
        return (len(rollouts), self.pool.apply_async(_score, (rollouts,)))

    def judging(self, pending: list) -> bool:
        """Whether a worker is still judging one of `submit`'s handles."""
        return any(not handle.ready() for _, handle in pending)

    def gather(self, pending: list, timeout: float | None = None) -> tuple[dict[str, list], int]:
        """`gather`'s components and failed chunks; after a timeout the workers are replaced (counted in
        `restarts`)."""
        parts, failed, hung = gather(pending, self.components, self.timeout if timeout is None else timeout,
                                     self.workers == 1)
        if hung and self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self._start()
            self.restarts += 1
        return parts, failed

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None

    def __enter__(self) -> "RewardPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
