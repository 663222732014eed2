import json
import os

import pytest
import torch

from safetensors.torch import load_file

from xomni.checkpoint import (INT8_SCALE, dequantize_int8, export_component, load_component, load_train_state,
                              open_log, open_run_log, quantize_int8, save_component, save_train_state)
from xomni.tokenizer.alignment import AlignmentConfig, AlignmentLM
from xomni.tokenizer.siglip_vq import SiglipVQ, SiglipVQConfig

SMALL = SiglipVQConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, position_grid=4,
                       codebook_size=16, codebook_dim=8, adapter_dim=32, adapter_blocks=1)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    vq = SiglipVQ(SMALL)
    save_component(tmp_path / "tok", SMALL, vq, {"stage": "test", "step": 3})
    again = load_component(tmp_path / "tok", SiglipVQConfig, SiglipVQ)
    for k, v in vq.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    meta = json.loads((tmp_path / "tok" / "meta.json").read_text())
    assert meta["stage"] == "test" and meta["step"] == 3 and "git_revision" in meta
    assert json.loads((tmp_path / "tok" / "config.json").read_text())["codebook_size"] == 16


def test_int8_rows_are_within_half_a_step_of_the_weights():
    w = torch.tensor([[0.5, -1.27, 0.0, 0.3], [2.0, 1.0, -0.004, 0.0]])
    q = quantize_int8({"w": w, "b": torch.ones(4), "small": torch.ones(1, 2)}, min_numel=8)
    assert q["w"].dtype == torch.int8 and q["w"][0].tolist() == [50, -127, 0, 30] and q["w"][1].tolist() == [127, 64, 0, 0]
    assert q["b"].dtype == torch.float32 and q["small"].dtype == torch.float32  # vectors and small matrices stay
    back = dequantize_int8(q)
    assert set(back) == {"w", "b", "small"}
    scale = q["w" + INT8_SCALE].float()[:, None]
    assert torch.allclose(scale.squeeze(1), torch.tensor([0.01, 2 / 127]), rtol=1e-3)
    assert ((back["w"] - w).abs() <= scale / 2 + 1e-6).all()
    tiny = torch.tensor([[1e-4, -5.1e-5, 2e-5, 0.0], [3e-6, -1e-6, 0.0, 1e-6]])  # under fp16's normal range once / 127
    q = quantize_int8({"w": tiny}, min_numel=8)
    step = q["w" + INT8_SCALE][:, None]
    assert step.dtype == torch.float32 and (step > 0).all()
    assert ((dequantize_int8(q)["w"] - tiny).abs() <= step * 0.501).all()


def test_an_int8_export_loads_back_close_and_smaller(tmp_path):
    torch.manual_seed(0)
    vq = SiglipVQ(SMALL)
    save_component(tmp_path / "tok", SMALL, vq)
    export_component(tmp_path / "tok", tmp_path / "fp16")
    export_component(tmp_path / "tok", tmp_path / "int8", int8_min=256)
    stored = load_file(str(tmp_path / "int8" / "model.safetensors"))
    assert any(v.dtype == torch.int8 for v in stored.values())
    assert (tmp_path / "int8" / "model.safetensors").stat().st_size < (tmp_path / "fp16" / "model.safetensors").stat().st_size
    again = load_component(tmp_path / "int8", SiglipVQConfig, SiglipVQ)
    for k, v in vq.state_dict().items():
        got = again.state_dict()[k]
        assert got.dtype == v.dtype and torch.allclose(got, v, atol=v.abs().max().item() / 127 + 1e-3), k


def test_tied_embeddings_survive_the_round_trip(tmp_path):
    cfg = AlignmentConfig(vocab_size=50, semantic_dim=8, hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1,
                          intermediate_size=32)
    lm = AlignmentLM(cfg)
    save_component(tmp_path / "lm", cfg, lm)
    again = load_component(tmp_path / "lm", AlignmentConfig, AlignmentLM)
    assert torch.equal(again.lm.lm_head.weight, lm.lm.lm_head.weight)
    assert again.lm.lm_head.weight.data_ptr() == again.lm.model.embed_tokens.weight.data_ptr()


def test_config_that_does_not_match_weights_fails_loudly(tmp_path):
    save_component(tmp_path / "tok", SMALL, SiglipVQ(SMALL))
    cfg = json.loads((tmp_path / "tok" / "config.json").read_text())
    cfg["codebook_size"] = 32
    (tmp_path / "tok" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not match"):
        load_component(tmp_path / "tok", SiglipVQConfig, SiglipVQ)
    cfg["not_a_field"] = 1
    (tmp_path / "tok" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="not_a_field"):
        load_component(tmp_path / "tok", SiglipVQConfig, SiglipVQ)


def test_failed_save_leaves_the_old_checkpoint_whole(tmp_path):
    torch.manual_seed(0)
    vq = SiglipVQ(SMALL)
    save_component(tmp_path / "tok", SMALL, vq, {"step": 1})
    with pytest.raises(FileNotFoundError):
        save_component(tmp_path / "tok", SMALL, SiglipVQ(SMALL), {"step": 2}, extra_files={"x": str(tmp_path / "nope")})
    assert json.loads((tmp_path / "tok" / "meta.json").read_text())["step"] == 1
    again = load_component(tmp_path / "tok", SiglipVQConfig, SiglipVQ)
    assert torch.equal(again.codebook, vq.codebook)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]  # no temporary folder left behind
    (tmp_path / "tok").rename(tmp_path / ".tok.old")  # killed between the swap's two renames
    with pytest.raises(FileNotFoundError, match="interrupted"):  # a reader says where the old version is
        load_component(tmp_path / "tok", SiglipVQConfig, SiglipVQ)
    with pytest.raises(FileNotFoundError):  # the next writer puts it back, even when its own write fails
        save_component(tmp_path / "tok", SMALL, SiglipVQ(SMALL), {"step": 2}, extra_files={"x": str(tmp_path / "nope")})
    assert torch.equal(load_component(tmp_path / "tok", SiglipVQConfig, SiglipVQ).codebook, vq.codebook)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]


def test_fp16_save_loads_back_as_fp32(tmp_path):
    vq = SiglipVQ(SMALL)
    save_component(tmp_path / "tok", SMALL, vq, dtype=torch.float16)
    again = load_component(tmp_path / "tok", SiglipVQConfig, SiglipVQ)
    assert again.codebook.dtype == torch.float32
    assert torch.allclose(again.codebook, vq.codebook, atol=1e-3)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_component(tmp_path / "nothing", SiglipVQConfig, SiglipVQ)


def test_train_state_round_trip(tmp_path):
    save_train_state(tmp_path / "s.pt", {"step": 5, "x": torch.arange(3)})
    state = load_train_state(tmp_path / "s.pt")
    assert state["step"] == 5 and torch.equal(state["x"], torch.arange(3))
    assert load_train_state(tmp_path / "none.pt") is None
    assert load_train_state(tmp_path / "s.pt", resume=False) is None and (tmp_path / "s.pt").is_file()
    (tmp_path / "log.jsonl").write_text('{"step": 0, "probe": 1}\n{"step": 5}\n')
    with open_run_log(tmp_path / "log.jsonl", tmp_path / "s.pt", {"step": 5}) as log:  # resumed: kept
        log.write('{"step": 6}\n')
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 3 and (tmp_path / "s.pt").is_file()
    with open_run_log(tmp_path / "log.jsonl", tmp_path / "s.pt", None) as log:  # starting over: both go
        log.write('{"step": 0}\n')
    assert (tmp_path / "log.jsonl").read_text() == '{"step": 0}\n' and not (tmp_path / "s.pt").exists()


def test_a_resumed_log_drops_the_steps_after_its_checkpoint(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [{"note": "header"}, *({"step": s} for s in range(1, 6))]))
    with open_log(path, 3) as log:  # killed after step 5, last checkpoint at step 3
        log.write(json.dumps({"step": 4, "again": True}) + "\n")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records == [{"note": "header"}, {"step": 1}, {"step": 2}, {"step": 3}, {"step": 4, "again": True}]
    with open_log(tmp_path / "new.jsonl", 0) as log:
        log.write("{}\n")
    assert (tmp_path / "new.jsonl").read_text() == "{}\n"
    with open_log(path, 0, fresh=True) as log:  # no saved state: every record is written again
        log.write(json.dumps({"step": 0}) + "\n")
    assert path.read_text() == '{"step": 0}\n'
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')  # killed mid-write
    with open_log(path, 2) as log:
        log.write(json.dumps({"step": 3}) + "\n")
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"step": 1}, {"step": 2}, {"step": 3}]
    path.write_text('{"step": 1}\n{"st\n{"step": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        open_log(path, 2)


def test_a_resume_is_held_to_the_settings_the_run_saved(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class Config:
        lr: float = 1e-3
        phase: str = "pretrain2"
        steps: int = 100
        workers: int = 1
        shards: str = "out/a,out/b"

    save_train_state(tmp_path / "s.pt", {"step": 5}, Config())
    assert load_train_state(tmp_path / "s.pt", Config(shards=f"./out/a,{os.path.abspath('out/b')}"))["step"] == 5
    with pytest.raises(ValueError, match="shards"):  # paths name the same files, or not
        load_train_state(tmp_path / "s.pt", Config(shards="out/c,out/b"))
    assert load_train_state(tmp_path / "s.pt", Config(steps=200))["step"] == 5  # running longer is a resume
    assert load_train_state(tmp_path / "s.pt", Config(workers=4), may_change=("workers",))["step"] == 5
    with pytest.raises(ValueError, match=r"lr: 0\.001 -> 0\.002; phase: 'pretrain2' -> 'pretrain3'"):
        load_train_state(tmp_path / "s.pt", Config(lr=2e-3, phase="pretrain3"))
    save_train_state(tmp_path / "old.pt", {"step": 7})  # saved before runs recorded their settings
    assert load_train_state(tmp_path / "old.pt", Config(lr=2e-3))["step"] == 7

    @dataclass
    class Older:  # Config before its `shards` field existed
        lr: float = 1e-3
        phase: str = "pretrain2"
        steps: int = 100
        workers: int = 1

    save_train_state(tmp_path / "older.pt", {"step": 9}, Older())
    assert load_train_state(tmp_path / "older.pt", Config(shards="out/c"))["step"] == 9  # nothing to compare with
    absent = {"shards": "out/a,out/b"}  # what runs saved before the field existed ran
    assert load_train_state(tmp_path / "older.pt", Config(), absent=absent)["step"] == 9
    with pytest.raises(ValueError, match=r"shards: 'out/a,out/b' -> 'out/c'"):
        load_train_state(tmp_path / "older.pt", Config(shards="out/c"), absent=absent)
