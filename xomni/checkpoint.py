"""Checkpoints: one directory per component, written atomically.

    DIR/config.json        the component's config dataclass, flat
    DIR/model.safetensors  its weights
    DIR/meta.json          stage, step, metrics, git revision, the resolved stage config

A stage's resumable state (its weights, optimiser state and step, and whatever else it needs to go on exactly: the
tokenizer stage's RNG and code usage) is one torch file in its run folder (`ar_state.pt`, `decoder_state.pt`, ...),
written atomically with the run's settings (`save_train_state`), which a resume is held to (`load_train_state`).
Writes go to a temporary sibling that is renamed into place, so a killed process leaves the old checkpoint whole.
Loading builds the model from `config.json` and loads the weights strictly, so a config that does not match its
weights fails loudly with the offending keys and shapes.

A shipped copy (`export_component`) may keep its large matrices as int8 with one fp32 scale per row (symmetric,
weight-only: the model computes in fp32 after loading); `load_component` reads either form.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

REPO_ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def git_revision() -> str:
    """The repository's revision ("-dirty" with uncommitted changes to tracked files) when this process first asked:
    at import of this module, so a long run's checkpoints name the code it loaded, not commits made while it ran."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


git_revision()


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _atomic_dir(path: Path):
    """A temporary sibling folder to write `path`'s new version into (a version a kill left aside put back first)."""
    recover(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))


def _swap_in(tmp: Path, path: Path) -> None:
    """Replace the folder `path` by `tmp`: two renames (the old one aside, the new one in), then the old one removed.
    A kill between the renames leaves no `path` and the old one aside: the next writer puts it back (`recover`)."""
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old)


@contextlib.contextmanager
def updating_folder(path: str | Path):
    """Change a folder of several parts as one: yields a temporary sibling holding what `path` holds now (hard links,
    so nothing is copied; its symbolic links stay links; every write into it must replace a file, never change one
    in place, as `save_component`, `export_component` and `write_text_atomically` do), swapped in for `path` when the
    block ends; on an error or a kill `path` is as it was (a kill leaves the temporary folder, hidden, beside it)."""
    path = Path(path)
    tmp = _atomic_dir(path)
    try:
        if path.is_dir():
            shutil.copytree(path, tmp, symlinks=True, copy_function=_link_or_copy, dirs_exist_ok=True)
        yield tmp
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links
        shutil.copy2(src, dst)


def recover(path: Path) -> None:
    """A component folder a kill left set aside mid-swap (`_swap_in`), put back where it was (by the next writer:
    a reader cannot tell a kill from a write in progress)."""
    old = path.with_name(f".{path.name}.old")
    if not path.exists() and old.is_dir():
        os.replace(old, path)


def file_digest(path: str | Path) -> str:
    """A short content digest of a file (a part's weights): which weights, whatever the file's path or mtime."""
    h = hashlib.sha256()  # read in chunks (hashlib.file_digest is Python 3.11+; the package supports 3.10)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def weights_stamp(checkpoint: str | Path, parts: tuple[str, ...] = ("tokenizer", "decoder", "ar", "alignment_lm"),
                  files: tuple[str, ...] = ()) -> dict:
    """A content digest of each of `parts`' weights in a checkpoint folder (and of each of its `files`): a checkpoint
    rebuilt at the same path with other weights is another one, and the same weights written again (a rerun's
    publish) are the same."""
    paths = [(part, Path(checkpoint) / part / "model.safetensors") for part in parts]
    paths += [(name, Path(checkpoint) / name) for name in files]
    return {name: file_digest(f) for name, f in paths if f.is_file()}


def save_component(path: str | Path, config: Any, model: torch.nn.Module, meta: dict | None = None,
                   dtype: torch.dtype | None = None, extra_files: dict[str, str] | None = None,
                   state: dict | None = None) -> Path:
    """Write config.json + model.safetensors + meta.json into `path`, replacing it atomically. `state`: the
    weights to write when `model.state_dict()` would not give full tensors (a sharded FSDP model)."""
    path = Path(path)
    tmp = _atomic_dir(path)
    try:
        state = state if state is not None else model.state_dict()
        aliases = tied_aliases(state)
        state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
                 for k, v in state.items() if k not in aliases}
        save_file(state, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(_jsonable(config), indent=2, ensure_ascii=False) + "\n")
        meta = {"git_revision": git_revision(), **(meta or {})}
        (tmp / "meta.json").write_text(json.dumps(_jsonable(meta), indent=2, ensure_ascii=False) + "\n")
        for name, source in (extra_files or {}).items():
            shutil.copyfile(source, tmp / name)
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def tied_aliases(model: torch.nn.Module | dict) -> set[str]:
    """State-dict keys (of a model or a state dict) that share storage with an earlier key (tied embeddings): saved
    once, restored by tying."""
    seen: dict[tuple, str] = {}
    aliases = set()
    for k, v in (model if isinstance(model, dict) else model.state_dict()).items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
        if key in seen:
            aliases.add(k)
        else:
            seen[key] = k
    return aliases


INT8_SCALE = ".int8_row_scale"  # key suffix of the per-row scales of an int8-stored matrix


def quantize_int8(state: dict[str, torch.Tensor], min_numel: int) -> dict[str, torch.Tensor]:
    """Floating weights of two or more dimensions (matrices, convolution kernels) and at least `min_numel` values ->
    int8 with an fp32 scale per row (per output channel: max |w| / 127, so every value is within half a step of its
    scale; an fp16 scale rounded small rows' steps down, clipping their largest values, and zeroed rows under about
    4e-6); everything else as it was. Files written with fp16 scales still load (`dequantize_int8`)."""
    out = {}
    for k, v in state.items():
        if v.is_floating_point() and v.dim() >= 2 and v.numel() >= min_numel:
            w = v.float().flatten(1)
            scale = (w.abs().amax(dim=1) / 127).clamp_min(1e-12)
            out[k] = (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8).view(v.shape)
            out[k + INT8_SCALE] = scale
        else:
            out[k] = v
    return out


def dequantize_int8(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `quantize_int8` (fp32 for the int8 matrices, the rest untouched)."""
    out = {k: v for k, v in state.items() if not k.endswith(INT8_SCALE)}
    for k in state:
        if k.endswith(INT8_SCALE):
            base = k[: -len(INT8_SCALE)]
            q = out[base]
            out[base] = (q.float().flatten(1) * state[k].float()[:, None]).view(q.shape)
    return out


def load_config(path: str | Path, config_cls: type) -> Any:
    path = Path(path)
    if not (path / "config.json").is_file():
        old = path.with_name(f".{path.name}.old")
        if old.is_dir():
            raise FileNotFoundError(f"no checkpoint at {path}: a write of it was interrupted and its previous version "
                                    f"is {old} (the next save puts it back; or rename it to {path.name})")
        raise FileNotFoundError(f"no checkpoint at {path} (config.json missing)")
    raw = json.loads((path / "config.json").read_text())
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise ValueError(f"{path}/config.json has keys {unknown} that {config_cls.__name__} does not know")
    return config_cls(**raw)


def load_component(path: str | Path, config_cls: type, model_cls: type, map_location: str | torch.device = "cpu"):
    """Build `model_cls(config)` from path/config.json and load path/model.safetensors strictly (fp32)."""
    path = Path(path)
    config = load_config(path, config_cls)
    model = model_cls(config)
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing")
    state = dequantize_int8(load_file(str(weights), device=str(map_location)))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    expected = {k: v for k, v in model.state_dict().items() if k not in tied_aliases(model)}
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [f"{k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in expected
             if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"checkpoint {path} does not match its config.json: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, shape mismatches {wrong[:5]}")
    model.load_state_dict(state, strict=False)  # strict above; tied aliases follow the key they share storage with
    return model


def export_component(src: str | Path, dst: str | Path, dtype: torch.dtype = torch.float16, int8_min: int = 0) -> Path:
    """Copy a component checkpoint with its floating weights cast to `dtype` (for shipping), atomically; with
    `int8_min`, matrices of at least that many values are stored as int8 rows (`quantize_int8`)."""
    src, dst = Path(src), Path(dst)
    if not (src / "model.safetensors").is_file():
        raise FileNotFoundError(f"no checkpoint at {src}")
    tmp = _atomic_dir(dst)
    try:
        state = dequantize_int8(load_file(str(src / "model.safetensors")))
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        save_file(quantize_int8(state, int8_min) if int8_min else state, str(tmp / "model.safetensors"))
        for name in ("config.json", "meta.json"):
            if (src / name).is_file():
                shutil.copyfile(src / name, tmp / name)
        _swap_in(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def _write_file_atomically(path: Path, write) -> None:
    """`write(tmp)` to a temporary sibling of `path`, then rename it over `path`; on failure `path` is untouched."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomically(path: str | Path, text: str) -> None:
    """A text file (a manifest, metrics) written whole or not at all."""
    _write_file_atomically(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def copy_file_atomically(src: str | Path, dst: str | Path) -> None:
    """`src`'s bytes as a new file at `dst`, whole or not at all (never written into the file `dst` was)."""
    _write_file_atomically(Path(dst), lambda tmp: shutil.copyfile(src, tmp))


# Config fields a resumed run may change: how long it runs (where the learning rates it has taken stay the same:
# `schedule.check_resumed_schedule`), on what device and precision, and what it records; never what it trains on or how
RESUMABLE = ("steps", "save_every", "eval_every", "eval_n", "resume", "out", "bf16", "device")


def save_train_state(path: str | Path, state: dict, config: Any = None) -> None:
    """torch.save to a temporary file, then rename over `path`; with `config` (the stage's Config), the run's
    settings go with it, for `load_train_state` to hold a resume to them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if config is not None:
        state = {**state, "config": _jsonable(config)}
    _write_file_atomically(path, lambda tmp: torch.save(state, tmp))


def _same_setting(a: Any, b: Any) -> bool:
    """Equal settings; paths (comma-separated lists of them too) are equal where they name the same files."""
    if a == b:
        return True
    if isinstance(a, str) and isinstance(b, str) and a and b:
        parts_a, parts_b = a.split(","), b.split(",")
        return len(parts_a) == len(parts_b) and all(os.path.realpath(x) == os.path.realpath(y)
                                                    for x, y in zip(parts_a, parts_b))
    return False


def load_train_state(path: str | Path, config: Any = None, may_change: tuple[str, ...] = (),
                     absent: dict[str, Any] | None = None, resume: bool = True) -> dict | None:
    """The state a run saved, or None. With `config`, a clear error if the saved run's settings differ from it in
    any field but `RESUMABLE` and `may_change` (a state saved without settings, by an older version, is taken). A
    field the saved settings lack (the run was saved before the field existed) is compared with `absent`'s value
    for it, what such runs ran, and taken when `absent` has none. `resume` False (a stage's `--resume false`): None,
    whatever is saved (`open_run_log` removes it once the stage's checks have passed)."""
    path = Path(path)
    if not resume or not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    saved = state.get("config")
    if config is not None and saved is not None:
        saved = {**(absent or {}), **saved}
        now = _jsonable(config)
        changed = [f"{k}: {saved[k]!r} -> {now[k]!r}" for k in now
                   if k in saved and k not in RESUMABLE + tuple(may_change) and not _same_setting(saved[k], now[k])]
        if changed:
            raise ValueError(f"{path.parent} holds a run with other settings ({'; '.join(changed)}): resume it with "
                             "its own, or give another --out, or --resume false to start over there")
    return state


def open_run_log(path: str | Path, state_path: str | Path, state: dict | None):
    """A training stage's log, opened just before its first step (after every check of its settings): resumed at
    the saved state's step, or, for a run from no saved state (a first run, or `--resume false`), emptied, and any
    state an earlier run left at `state_path` removed, so that a plain rerun after a kill resumes this run and not
    that one (and a refused `--resume false` has removed nothing)."""
    if state is None and Path(state_path).is_file():
        Path(state_path).unlink(missing_ok=True)  # missing_ok: every rank of a distributed run may get here
        print(f"starting over in {Path(state_path).parent}: removed the earlier run's {Path(state_path).name}")
    return open_log(path, state["step"] if state is not None else 0, fresh=state is None)


def _jsonl_records(path: Path) -> list[tuple[str, dict | None]]:
    """A jsonl file's lines with their records (None for a blank line), every line ending in a newline. A last line
    cut short (a run killed mid-write) is dropped; a broken line before it is an error naming the file."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            out.append((line, None))
            continue
        try:
            out.append((line if line.endswith("\n") else line + "\n", json.loads(line)))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                continue
            raise ValueError(f"{path}, line {i + 1}, is not a JSON record; mend or remove it") from None
    return out


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a jsonl file that a run appends to (a log, an evaluation's outputs): a last line cut short by
    a kill is left out, a broken line before it is an error naming the file."""
    return [r for _, r in _jsonl_records(Path(path)) if r is not None]


def open_jsonl(path: str | Path, keep=lambda record: True):
    """Open a jsonl file for appending, after dropping (atomically) a last line cut short by a kill and the records
    `keep` refuses, so that appended records follow whole lines."""
    path = Path(path)
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line, r in _jsonl_records(path) if r is None or keep(r)]
        if kept != lines:
            _write_file_atomically(path, lambda tmp: Path(tmp).write_text("".join(kept), encoding="utf-8"))
    return open(path, "a", encoding="utf-8")


def open_log(path: str | Path, step: int, fresh: bool = False):
    """Open a stage's jsonl log for appending, resuming at `step`: records of later steps (written after the last
    checkpoint by a run that was then killed) are dropped first, atomically, since the resumed run writes them again.
    Records without a step are kept; a last line cut short (the run killed mid-write) is dropped, a broken line
    before it is an error naming the file. `fresh` (the run starts from no saved state: a first run, one killed
    before its first checkpoint, or `--resume false`) empties it, since every record will be written again."""
    if fresh:
        _write_file_atomically(Path(path), lambda tmp: Path(tmp).write_text(""))
    return open_jsonl(path, lambda record: record.get("step", -1) <= step)


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a .safetensors file, or of all the .safetensors files in a folder (sharded checkpoints)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors weights at {path}")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


def check_fit(own: dict, mapped: dict, what: str) -> None:
    """Refuse weights that leave one of `own`'s tensors unset or give it another shape."""
    missing = sorted(set(own) - set(mapped))
    wrong = [f"{k}: {tuple(mapped[k].shape)} vs {tuple(own[k].shape)}" for k in own
             if k in mapped and mapped[k].shape != own[k].shape]
    if missing or wrong:
        raise ValueError(f"{what}: missing {missing[:4]}, shape mismatches {wrong[:4]}")
