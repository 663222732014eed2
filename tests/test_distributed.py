"""DDP and FSDP on CPU (gloo): two processes under torchrun follow the loss curve of one process with the same global
batch, and a sharded run resumes exactly."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from xomni.checkpoint import load_component, save_component
from xomni.model.unified import UnifiedConfig, UnifiedModel
from xomni.stages import tokenize, train_tokenizer
from xomni.tokenizer.siglip_vq import SiglipVQConfig
from xomni.tokenizer.text import TextTokenizer

VQ = SiglipVQConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, position_grid=8,
                    codebook_size=32, codebook_dim=8, adapter_dim=32, adapter_blocks=1)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setitem(train_tokenizer.PRESETS, "test", VQ)
    train_tokenizer.main(train_tokenizer.Config(preset="test", out=str(tmp_path), steps=1, batch_size=2, eval_every=100,
                                                eval_n=2, bpe_vocab=300, bpe_scenes=40, sizes="64x64", heads_first=0,
                                                codebook_after=0, kmeans_scenes=4))
    shards = tokenize.main(tokenize.Config(tokenizer=str(tmp_path / "tokenizer"), out=str(tmp_path / "shards"),
                                           n=16, height=64, width=64))
    tok = TextTokenizer.from_file(tmp_path / "text_tokenizer.json")
    torch.manual_seed(0)
    cfg = UnifiedConfig(text_vocab_size=tok.vocab_size, codebook_size=32, hidden_size=32, num_layers=1,
                        num_vision_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=48, max_positions=256)
    save_component(tmp_path / "init", cfg, UnifiedModel(cfg))
    return tmp_path, shards


def _run(tmp_path, shards, out, nproc, *extra):
    args = ["train", "ar", "--phase", "pretrain2", "--init", str(tmp_path / "init"), "--shards", str(shards),
            "--tokenizer", str(tmp_path / "tokenizer"), "--text-tokenizer", str(tmp_path / "text_tokenizer.json"),
            "--out", str(out), "--steps", "2", "--batch-size", "6", "--seq-len", "200", "--eval-every", "100",
            "--save-every", "2", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        cmd = [sys.executable, "-m", "xomni.cli", *args]
    else:
        with socket.socket() as probe:  # a free port for each run: a fixed one can still be held by the last run
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
               str(port), "-m", "xomni.cli", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]  # what the run said, should it fail
    return [r for x in (out / "ar_log.jsonl").read_text().splitlines() if "loss" in (r := json.loads(x))]


def test_ddp_two_processes_match_one(setup):
    tmp_path, shards = setup
    one = _run(tmp_path, shards, tmp_path / "one", 1)
    two = _run(tmp_path, shards, tmp_path / "two", 2)
    sharded = _run(tmp_path, shards, tmp_path / "fsdp", 2, "--fsdp", "true")
    wa = load_component(tmp_path / "one" / "model", UnifiedConfig, UnifiedModel).state_dict()
    assert len(one) == 2 and {r["processes"] for r in one} == {1}
    for run, name in ((two, "two"), (sharded, "fsdp")):
        assert {r["processes"] for r in run} == {2}  # two ranks, each with its share of the step's samples
        assert all(b["rows"] < a["rows"] for a, b in zip(one, run))  # the lead rank packed only its share
        for a, b in zip(one, run, strict=True):
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        wb = load_component(tmp_path / name / "model", UnifiedConfig, UnifiedModel).state_dict()
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)


def test_fsdp_run_resumes_exactly(setup):
    tmp_path, shards = setup
    whole = _run(tmp_path, shards, tmp_path / "whole", 2, "--fsdp", "true")
    _run(tmp_path, shards, tmp_path / "parts", 2, "--fsdp", "true", "--steps", "1", "--save-every", "1")
    resumed = _run(tmp_path, shards, tmp_path / "parts", 2, "--fsdp", "true")  # continues from step 1 to 2
    assert [r["step"] for r in resumed] == [1, 2]
    assert resumed[-1]["loss"] == pytest.approx(whole[-1]["loss"], rel=1e-6)
    wa = load_component(tmp_path / "whole" / "model", UnifiedConfig, UnifiedModel).state_dict()
    wb = load_component(tmp_path / "parts" / "model", UnifiedConfig, UnifiedModel).state_dict()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)
