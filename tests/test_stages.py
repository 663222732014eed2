"""Stage smoke tests on dummy-sized components: they run, they checkpoint, and a killed run resumes exactly."""

import json
import math
import shutil
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file

from xomni.checkpoint import load_component, save_component
from xomni.data.world import WorldConfig
from xomni.decoder.flux import DecoderConfig, SemanticFlux
from xomni.precision import native_bf16
from xomni.stages import eval_reconstruction, tokenize, train_decoder, train_tokenizer
from xomni.tokenizer.siglip_vq import SiglipVQConfig, SiglipVQ

VQ = SiglipVQConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, position_grid=8,
                    codebook_size=32, codebook_dim=8, adapter_dim=32, adapter_blocks=1)
DEC = DecoderConfig(num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                    joint_attention_dim=16, pooled_projection_dim=16, axes_dims_rope=(4, 6, 6), semantic_dim=32,
                    patch_prior=16)


@pytest.fixture
def presets(monkeypatch):
    monkeypatch.setitem(train_tokenizer.PRESETS, "test", VQ)
    monkeypatch.setitem(train_decoder.PRESETS, "test", DEC)


def _tok_cfg(out, **kw):
    base = dict(preset="test", out=str(out), steps=4, batch_size=2, save_every=2, eval_every=100, eval_n=3,
                bpe_vocab=300, bpe_scenes=40, sizes="64x64,64x96", restart_every=3, heads_first=1, codebook_after=2, kmeans_scenes=4)
    return train_tokenizer.Config(**{**base, **kw})


class Crash(RuntimeError):
    pass


def _crash_after(monkeypatch, module, calls: int, name: str = "scene_batch"):
    real = getattr(module, name)
    count = {"n": 0}

    def flaky(*args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise Crash("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)
    return real


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tokenizer_stage_resumes_exactly(tmp_path, presets, monkeypatch):
    metrics = train_tokenizer.main(_tok_cfg(tmp_path / "straight"))
    assert 0 <= metrics["vqa_accuracy"] <= 1 and 0 < metrics["codebook_utilization"] <= 1
    assert 0 <= metrics["glyph_accuracy_en"] <= 1 and 0 <= metrics["object_color_head_accuracy"] <= 1
    # calls: steps 1 and 2, k-means (2 batches), step 3, then it dies building step 4's batch; step 2 was saved,
    # so the resumed run redoes the k-means too
    real = _crash_after(monkeypatch, train_tokenizer, 5, "training_batch")
    with pytest.raises(Crash):
        train_tokenizer.main(_tok_cfg(tmp_path / "killed"))
    monkeypatch.setattr(train_tokenizer, "training_batch", real)
    train_tokenizer.main(_tok_cfg(tmp_path / "killed"))
    a = load_component(tmp_path / "straight" / "tokenizer", SiglipVQConfig, SiglipVQ)
    b = load_component(tmp_path / "killed" / "tokenizer", SiglipVQConfig, SiglipVQ)
    assert _same_weights(a, b)
    steps = [json.loads(line)["step"] for line in (tmp_path / "killed" / "tokenizer_log.jsonl").read_text().splitlines()]
    # step 3 ran before the crash and again from the step-2 checkpoint; its first record was dropped on resuming
    assert steps == [1, 2, 3, 4]
    meta = json.loads((tmp_path / "killed" / "tokenizer" / "meta.json").read_text())
    assert meta["step"] == 4 and meta["stage"] == "train_tokenizer"


def test_a_released_projector_keeps_its_codebook(tmp_path, presets, monkeypatch):
    from xomni.tokenizer.siglip_vq import OFFICIAL_PROJECTOR_KEYS

    ours = SiglipVQ(VQ).state_dict()  # our names -> X-Omni's, for a projector file of the test preset's sizes
    theirs = {}
    for key, value in ours.items():
        for official, name in OFFICIAL_PROJECTOR_KEYS.items():
            if key == name or key.startswith(name + "."):
                theirs[official + key[len(name):]] = value[:, :, None, None] if key == "proj.weight" else value
    save_file(theirs, str(tmp_path / "projector.safetensors"))

    def never(*args, **kwargs):
        raise AssertionError("the released codebook was replaced")

    monkeypatch.setattr(train_tokenizer, "init_codebook", never)
    monkeypatch.setattr(SiglipVQ, "restart_codes", never)
    train_tokenizer.main(_tok_cfg(tmp_path, steps=4, codebook_after=2, restart_every=1, sizes="64x64", lr=0.0,
                                  projector_path=str(tmp_path / "projector.safetensors")))  # lr 0: nothing moves
    saved = load_component(tmp_path / "tokenizer", SiglipVQConfig, SiglipVQ)
    assert torch.equal(saved.codebook, theirs["quantize.embedding.weight"])  # the released codebook, kept


def test_lm_only_keeps_the_tokenizer_frozen(tmp_path, presets):
    train_tokenizer.main(_tok_cfg(tmp_path, steps=2))
    before = load_component(tmp_path / "tokenizer", SiglipVQConfig, SiglipVQ)
    lm_before = (tmp_path / "alignment_lm" / "model.safetensors").read_bytes()
    train_tokenizer.main(_tok_cfg(tmp_path, steps=4, lm_only=True))
    after = load_component(tmp_path / "tokenizer", SiglipVQConfig, SiglipVQ)
    assert _same_weights(before, after)
    lm_pixels = (tmp_path / "alignment_lm" / "model.safetensors").read_bytes()
    assert lm_pixels != lm_before
    # the same, reading the frozen codes from token shards: no encoder in the loop
    shards = tokenize.main(tokenize.Config(tokenizer=str(tmp_path / "tokenizer"), out=str(tmp_path / "shards"),
                                           n=6, height=64, width=64))
    train_tokenizer.main(_tok_cfg(tmp_path, steps=6, lm_only=True, shards=str(shards)))
    assert _same_weights(before, load_component(tmp_path / "tokenizer", SiglipVQConfig, SiglipVQ))
    assert (tmp_path / "alignment_lm" / "model.safetensors").read_bytes() != lm_pixels
    with pytest.raises(ValueError, match="lm-only"):
        train_tokenizer.main(_tok_cfg(tmp_path / "x", steps=1, shards=str(shards)))
    with pytest.raises(ValueError, match="HEIGHTxWIDTH"):
        train_tokenizer.main(_tok_cfg(tmp_path / "x", steps=1, sizes="128"))
    with pytest.raises(ValueError, match="spell_quoted"):  # the kept text tokenizer is not the one asked for
        train_tokenizer.main(_tok_cfg(tmp_path, steps=1, spell_quoted=False, resume=False))
    with pytest.raises(ValueError, match="bpe_vocab=300, the run asks for bpe_vocab=301"):
        train_tokenizer.main(_tok_cfg(tmp_path, steps=1, bpe_vocab=301, resume=False))
    with pytest.raises(ValueError, match="other settings"):  # nor is a resume with another lr
        train_tokenizer.main(_tok_cfg(tmp_path, steps=8, lr=1.0))
    with pytest.raises(ValueError, match="finished tokenizer"):  # --lm-only with no tokenizer to freeze
        train_tokenizer.main(_tok_cfg(tmp_path / "x", lm_only=True))
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_tokenize_then_decoder_stage_resumes_exactly(tmp_path, presets, monkeypatch):
    train_tokenizer.main(_tok_cfg(tmp_path, steps=1))
    shards = tokenize.main(tokenize.Config(tokenizer=str(tmp_path / "tokenizer"), out=str(tmp_path / "shards"),
                                           n=10, shard_size=4, height=64, width=64, batch_size=4))
    indices, codes = tokenize.load_shards(shards)
    assert indices.tolist() == list(range(10)) and codes.shape == (10, 4, 4)
    written = {f.name: f.stat().st_mtime_ns for f in shards.glob("shard_*")}
    again = tokenize.main(tokenize.Config(tokenizer=str(tmp_path / "tokenizer"), out=str(tmp_path / "shards"),
                                          n=10, shard_size=4, height=64, width=64))
    assert torch.equal(tokenize.load_shards(again)[1], codes)  # existing shards are kept, not written again
    assert {f.name: f.stat().st_mtime_ns for f in shards.glob("shard_*")} == written
    vq = train_tokenizer.load_tokenizer(tmp_path / "tokenizer")  # another tokenizer's weights at another path
    with torch.no_grad():
        next(vq.parameters()).add_(1.0)
    save_component(tmp_path / "tok2", vq.config, vq)
    fewer = tokenize.main(tokenize.Config(tokenizer=str(tmp_path / "tok2"), out=str(tmp_path / "shards"),
                                          n=6, shard_size=4, height=64, width=64))
    assert tokenize.load_shards(fewer)[0].tolist() == list(range(6))  # the third shard, beyond --n, is gone
    assert all(f.stat().st_mtime_ns != written[f.name] for f in shards.glob("shard_*"))  # re-encoded
    assert {tokenize.shard_meta(f)["tokenizer_digest"] for f in shards.glob("shard_*")} == \
        {tokenize.tokenizer_digest(tmp_path / "tok2")} != {tokenize.tokenizer_digest(tmp_path / "tokenizer")}
    shards = tokenize.main(tokenize.Config(tokenizer=str(tmp_path / "tokenizer"), out=str(tmp_path / "shards"),
                                           n=10, shard_size=4, height=64, width=64))
    assert torch.equal(tokenize.load_shards(shards)[1], codes)
    dense = tokenize.main(tokenize.Config(tokenizer=str(tmp_path / "tokenizer"), out=str(tmp_path / "shards"),
                                          n=4, height=64, width=64, dense_text=True))
    assert dense.name == "train-dense_64x64" and tokenize.shard_world(dense)[1].dense_text
    assert tokenize.shard_world(shards) == ("train", WorldConfig(width=64, height=64))
    renamed = tmp_path / "renamed" / "train_64x64"  # dense shards under a plain folder's name
    shutil.copytree(dense, renamed)
    with pytest.raises(ValueError, match="dense_text True \\(the folder's name says False\\)"):
        tokenize.load_shards(renamed)
    with monkeypatch.context() as m:
        m.setattr(tokenize, "SPLIT_VERSION", "v0")  # shards of another world version name other scenes
        with pytest.raises(ValueError, match="split v3"):
            tokenize.load_shards(shards)
        tokenize.main(tokenize.Config(tokenizer=str(tmp_path / "tokenizer"), out=str(tmp_path / "shards"),
                                      n=10, shard_size=4, height=64, width=64))  # rewrites them
        assert tokenize.load_shards(shards)[0].tolist() == list(range(10))
    with pytest.raises(ValueError, match="split v0"):
        tokenize.load_shards(shards)
    tokenize.main(tokenize.Config(tokenizer=str(tmp_path / "tokenizer"), out=str(tmp_path / "shards"), n=10,
                                  shard_size=4, height=64, width=64))
    assert torch.equal(tokenize.load_shards(shards)[1], codes)
    assert torch.equal(tokenize.load_shards(shards, tmp_path / "tokenizer", "train")[1], codes)
    with pytest.raises(ValueError, match="another tokenizer"):  # another codebook's codes would train silently
        tokenize.load_shards(shards, tmp_path / "tok2")
    held = tokenize.main(tokenize.Config(tokenizer=str(tmp_path / "tokenizer"), out=str(tmp_path / "shards"), n=2,
                                         height=64, width=64, split="heldout"))
    with pytest.raises(ValueError, match="'heldout' scenes"):  # the suites' scenes are never trained on
        train_decoder.main(train_decoder.Config(preset="test", tokenizer=str(tmp_path / "tokenizer"),
                                                shards=f"{shards},{held}", out=str(tmp_path / "held"), steps=1))

    def dec_cfg(out):
        return train_decoder.Config(preset="test", tokenizer=str(tmp_path / "tokenizer"), shards=f"{shards},{dense}",
                                    out=str(out), steps=4, batch_size=3, save_every=2, eval_every=4, sample_steps=2)

    metrics = train_decoder.main(dec_cfg(tmp_path / "d1"))
    assert metrics["psnr_heldout"] > 0
    assert (tmp_path / "d1" / "decoder_samples_000004.png").is_file()
    real = _crash_after(monkeypatch, train_decoder, 3, "render_rows")
    with pytest.raises(Crash):
        train_decoder.main(dec_cfg(tmp_path / "d2"))
    monkeypatch.setattr(train_decoder, "render_rows", real)
    train_decoder.main(dec_cfg(tmp_path / "d2"))
    a = load_component(tmp_path / "d1" / "decoder", DecoderConfig, SemanticFlux)
    b = load_component(tmp_path / "d2" / "decoder", DecoderConfig, SemanticFlux)
    assert _same_weights(a, b)


def test_decoder_init_and_prior_first(tmp_path, presets, monkeypatch):
    """--init starts from a decoder's weights; --prior-first steps train the patch prior and nothing else."""
    train_tokenizer.main(_tok_cfg(tmp_path, steps=1, sizes="64x64"))
    shards = tokenize.main(tokenize.Config(tokenizer=str(tmp_path / "tokenizer"), out=str(tmp_path / "shards"), n=4,
                                           height=64, width=64))

    def dec_cfg(out, **kw):
        return train_decoder.Config(**{**dict(preset="test", tokenizer=str(tmp_path / "tokenizer"), shards=str(shards),
                                              out=str(out), steps=2, batch_size=2, eval_every=100), **kw})

    train_decoder.main(dec_cfg(tmp_path / "a"))
    train_decoder.main(dec_cfg(tmp_path / "bf", bf16="true"))  # autocast forward; the weights stay float32
    assert json.loads((tmp_path / "bf" / "decoder" / "meta.json").read_text())["config"]["bf16"] == "true"
    bf_log = [json.loads(x) for x in (tmp_path / "bf" / "decoder_log.jsonl").read_text().splitlines()]
    assert len(bf_log) == 2 and all(math.isfinite(r["loss"]) for r in bf_log)
    bf_weights = load_file(str(tmp_path / "bf" / "decoder" / "model.safetensors"))
    assert all(v.dtype == torch.float32 for v in bf_weights.values())
    start = load_component(tmp_path / "a" / "decoder", DecoderConfig, SemanticFlux).state_dict()
    train_decoder.main(dec_cfg(tmp_path / "b", init=str(tmp_path / "a" / "decoder"), prior_first=2))
    after = load_component(tmp_path / "b" / "decoder", DecoderConfig, SemanticFlux).state_dict()
    changed = {k for k in start if not torch.equal(start[k], after[k])}
    assert changed and all(k.startswith("prior.") for k in changed)
    from xomni.stages import publish

    with pytest.raises(FileNotFoundError):  # the run folder holds no decoder/ of its own
        publish.main(publish.Config(run=str(tmp_path), dest=str(tmp_path / "ship")))
    publish.main(publish.Config(run=str(tmp_path), dest=str(tmp_path / "ship"), decoder=str(tmp_path / "b" / "decoder")))
    shipped = load_component(tmp_path / "ship" / "decoder", DecoderConfig, SemanticFlux).state_dict()
    assert all(torch.equal(shipped[k], after[k].half().float()) for k in after)
    shutil.copytree(tmp_path / "ship" / "decoder", tmp_path / "ship" / "ar")  # an AR model an earlier publish left
    assert publish.main(publish.Config(run=str(tmp_path), dest=str(tmp_path / "ship"),
                                       decoder=str(tmp_path / "b" / "decoder")))["not_shipped_here"] == ["ar"]
    assert (tmp_path / "ship" / "ar").is_dir()  # said, not removed
    shutil.rmtree(tmp_path / "ship" / "ar")

    def snapshot(folder):
        return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}

    before, exported = snapshot(tmp_path / "ship"), []
    real_export = publish.export_component

    def export_then_fail(src, dst, *args):  # killed after the first part was written
        if exported:
            raise KeyboardInterrupt
        exported.append(real_export(src, dst, *args))

    with monkeypatch.context() as m:
        m.setattr(publish, "export_component", export_then_fail)
        with pytest.raises(KeyboardInterrupt):
            publish.main(publish.Config(run=str(tmp_path), dest=str(tmp_path / "ship"), fp16=False,
                                        decoder=str(tmp_path / "b" / "decoder")))
    assert exported and snapshot(tmp_path / "ship") == before  # one part written, none of it in DEST
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ship")]  # nor left beside it
    monkeypatch.setattr(publish, "INT8_MIN", 64)  # the test decoder's matrices are small
    publish.main(publish.Config(run=str(tmp_path), dest=str(tmp_path / "ship8"), decoder=str(tmp_path / "b" / "decoder"),
                 int8=True))
    tok8 = load_file(str(tmp_path / "ship8" / "tokenizer" / "model.safetensors"))
    dec8 = load_file(str(tmp_path / "ship8" / "decoder" / "model.safetensors"))
    assert not any(v.dtype == torch.int8 for v in tok8.values())  # the codes stay the vocabulary's
    assert any(v.dtype == torch.int8 for v in dec8.values())
    assert "int8" in json.loads((tmp_path / "ship8" / "decoder" / "meta.json").read_text())["weights_dtype"]
    shipped8 = load_component(tmp_path / "ship8" / "decoder", DecoderConfig, SemanticFlux).state_dict()
    assert all(torch.allclose(shipped8[k], after[k], atol=after[k].abs().max().item() / 127 + 1e-3) for k in after)
    publish.main(publish.Config(run=str(tmp_path / "ship8"), dest=str(tmp_path / "ship8"), int8=True))  # onto itself
    again = load_component(tmp_path / "ship8" / "decoder", DecoderConfig, SemanticFlux).state_dict()
    assert all(torch.allclose(again[k], shipped8[k], atol=shipped8[k].abs().max().item() / 127 + 1e-3) for k in after)
    monkeypatch.setitem(train_decoder.PRESETS, "other", DecoderConfig(**{**DEC.__dict__, "patch_prior": 8}))
    with pytest.raises(ValueError, match="different decoder"):
        train_decoder.main(dec_cfg(tmp_path / "c", preset="other", init=str(tmp_path / "a" / "decoder")))


def test_eval_reconstruction_writes_every_metric(tmp_path, presets, monkeypatch):
    train_tokenizer.main(_tok_cfg(tmp_path, steps=1, sizes="128x128"))
    shards = tokenize.main(tokenize.Config(tokenizer=str(tmp_path / "tokenizer"), out=str(tmp_path / "shards"), n=4))
    train_decoder.main(train_decoder.Config(preset="test", tokenizer=str(tmp_path / "tokenizer"), shards=str(shards),
                                            out=str(tmp_path), steps=1, batch_size=2, sample_steps=1, eval_every=100))
    metrics = eval_reconstruction.main(eval_reconstruction.Config(out=str(tmp_path / "eval"), checkpoint=str(tmp_path),
                                                                  n=6, steps=1, batch_size=3, grid=2,
                                                                  utilization_n=10))
    keys = {"n", "ocr_word_accuracy_en", "ocr_char_accuracy_zh", "ocr_word_accuracy_en_original",
            "ocr_char_accuracy_zh_original", "object_color_accuracy", "codebook_utilization", "vqa_accuracy"}
    assert keys <= set(metrics)
    on_disk = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert on_disk["n"] == 6 and keys <= set(on_disk)
    assert metrics["object_color_accuracy_original"] == 1.0  # the judge is exact on the renders themselves
    assert (tmp_path / "eval" / "grid.png").is_file()
    assert len((tmp_path / "eval" / "samples.jsonl").read_text().splitlines()) == 6

    def no_scenes(*args, **kwargs):
        raise AssertionError("evaluated again")

    with monkeypatch.context() as m:
        m.setattr(eval_reconstruction, "scene_batch", no_scenes)
        again = eval_reconstruction.Config(out=str(tmp_path / "eval"), checkpoint=str(tmp_path), n=6, steps=1,
                                           batch_size=3, grid=2, utilization_n=10)
        assert eval_reconstruction.main(again) == on_disk  # same settings, same weights: the earlier result
        shutil.copytree(tmp_path / "decoder", tmp_path / "ar")  # a part it does not read, published beside them
        assert eval_reconstruction.main(again) == on_disk
        with pytest.raises(AssertionError, match="evaluated again"):  # another setting: afresh
            eval_reconstruction.main(replace(again, steps=2))
        assert not (tmp_path / "eval" / "metrics.json").exists()  # not left beside a run cut short
        (tmp_path / "eval" / "metrics.json").write_text(json.dumps(on_disk))  # the first result back
        assert eval_reconstruction.main(again) == on_disk
        train_decoder.main(train_decoder.Config(preset="test", tokenizer=str(tmp_path / "tokenizer"),
                                                shards=str(shards), out=str(tmp_path), steps=2, batch_size=2,
                                                sample_steps=1, eval_every=100))
        with pytest.raises(AssertionError, match="evaluated again"):  # other decoder weights at the same path: afresh
            eval_reconstruction.main(again)

    from PIL import Image

    from xomni.cli import main as cli

    Image.new("RGBA", (100, 150), (200, 30, 30, 255)).save(tmp_path / "in.png")  # RGBA, resized to 128x192
    assert cli(["reconstruct", str(tmp_path / "in.png"), "--out", str(tmp_path / "out.png"),
                "--checkpoint", str(tmp_path), "--steps", "1"]) == 0
    assert Image.open(tmp_path / "out.png").size == (128, 192)


def test_suites_run_on_reconstructions_and_understanding_from_a_stage_checkpoint(tmp_path, presets):
    from xomni.stages import eval_suite

    train_tokenizer.main(_tok_cfg(tmp_path, steps=1, sizes="128x128"))
    shards = tokenize.main(tokenize.Config(tokenizer=str(tmp_path / "tokenizer"), out=str(tmp_path / "shards"), n=4))
    train_decoder.main(train_decoder.Config(preset="test", tokenizer=str(tmp_path / "tokenizer"), shards=str(shards),
                                            out=str(tmp_path), steps=1, batch_size=2, sample_steps=1, eval_every=100))
    text = eval_suite.main(eval_suite.Config(suite="synth-text-zh", out=str(tmp_path / "t"), checkpoint=str(tmp_path),
                                             n=3, source="reconstructions", steps=1))
    assert text["source"] == "reconstructions" and text["checkpoint"] == str(tmp_path) and 0 <= text["score"] <= 1
    pope = eval_suite.main(eval_suite.Config(suite="synth-pope", out=str(tmp_path / "p"), checkpoint=str(tmp_path), n=4))
    assert pope["judge"] == "alignment-lm" and pope["n"] == 4 and 0 <= pope["score"] <= 1


AR = dict(hidden_size=32, num_layers=1, num_vision_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=48,
          max_positions=256)


def test_ar_phases_freeze_what_the_paper_freezes_and_resume_exactly(tmp_path, presets, monkeypatch):
    from xomni.model.unified import UnifiedConfig, UnifiedModel
    from xomni.stages import train_ar

    monkeypatch.setitem(train_ar.PRESETS, "test", UnifiedConfig(**AR))
    train_tokenizer.main(_tok_cfg(tmp_path, steps=1, sizes="64x64"))
    shards = tokenize.main(tokenize.Config(tokenizer=str(tmp_path / "tokenizer"), out=str(tmp_path / "shards"), n=8,
                                           height=64, width=64))

    def ar_cfg(out, **kw):
        base = dict(preset="test", text_tokenizer=str(tmp_path / "text_tokenizer.json"), shards=str(shards),
                    tokenizer=str(tmp_path / "tokenizer"), out=str(out), steps=4, batch_size=3, seq_len=200,
                    save_every=2, eval_every=4, eval_n=2)
        return train_ar.Config(**{**base, **kw})

    train_ar.main(ar_cfg(tmp_path / "text", phase="text"))
    before = load_component(tmp_path / "text" / "model", UnifiedConfig, UnifiedModel).state_dict()
    train_ar.main(ar_cfg(tmp_path / "pt1", phase="pretrain1", init=str(tmp_path / "text" / "model")))
    after = load_component(tmp_path / "pt1" / "model", UnifiedConfig, UnifiedModel).state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"vision_pre", "vision_post", "mm_embed", "mm_head", "mm_norm"}
    train_ar.main(ar_cfg(tmp_path / "pt1t", phase="pretrain1", init=str(tmp_path / "text" / "model"), steps=1, lr=0.0,
                         image_embed_init="tokenizer", bf16="auto"))  # lr 0: the weights stay the initialisation
    ran = json.loads((tmp_path / "pt1t" / "model" / "meta.json").read_text())["config"]["bf16"]
    assert ran == str(native_bf16("cpu")).lower()  # auto resolved, and the meta says what ran
    started = load_component(tmp_path / "pt1t" / "model", UnifiedConfig, UnifiedModel).mm_embed.weight
    vq = load_component(tmp_path / "tokenizer", SiglipVQConfig, SiglipVQ)
    torch.testing.assert_close(started, train_ar.tokenizer_image_embeddings(vq, before["embed_tokens.weight"]))

    weighted = dict(first_cell_weight=4.0, object_cell_weight=3.0, text_cell_weight=2.0)  # resume holds with weights
    real = train_ar.make_scene
    drawn: list = []

    def record(world, split, index):
        if split == "train":
            drawn.append(index)
        return real(world, split, index)

    monkeypatch.setattr(train_ar, "make_scene", record)
    metrics = train_ar.main(ar_cfg(tmp_path / "a", phase="pretrain2", **weighted))
    assert set(metrics) == {"heldout_loss_image", "heldout_loss_text"}
    assert json.loads((tmp_path / "a" / "model" / "meta.json").read_text())["metrics_step"] == 4
    stream, drawn[:] = list(drawn), []
    train_ar.main(ar_cfg(tmp_path / "c", phase="pretrain2", steps=2, data_start=2, eval_every=4))
    assert len(stream) == 4 * 3 and drawn == stream[2 * 3:]  # --data-start 2: the stream's steps 2 and 3
    assert json.loads((tmp_path / "c" / "model" / "meta.json").read_text())["metrics_step"] == 2  # the last step's
    calls = {"n": 0}

    def dies(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3 * 3:  # three steps of three samples, then it dies building step 4
            raise Crash("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(train_ar, "make_scene", dies)
    with pytest.raises(Crash):
        train_ar.main(ar_cfg(tmp_path / "b", phase="pretrain2", **weighted))
    monkeypatch.setattr(train_ar, "make_scene", real)
    train_ar.main(ar_cfg(tmp_path / "b", phase="pretrain2", **weighted))
    a = load_component(tmp_path / "a" / "model", UnifiedConfig, UnifiedModel)
    b = load_component(tmp_path / "b" / "model", UnifiedConfig, UnifiedModel)
    assert _same_weights(a, b)


def test_split_loss_weights_each_target_and_counts_the_whole_step():
    from xomni.model.unified import UnifiedConfig, UnifiedModel
    from xomni.stages.train_ar import split_loss, target_counts

    torch.manual_seed(0)
    model = UnifiedModel(UnifiedConfig(**AR))
    V = model.config.text_vocab_size
    hidden = torch.randn(1, 5, model.config.hidden_size)
    labels = torch.tensor([[V + 3, V + 1, 7, -100, V + 2]])
    weights = torch.tensor([[1.0, 4.0, 1.0, 0.0, 0.5]])
    img = torch.nn.functional.cross_entropy(model.mm_head(hidden[0, [0, 1, 4]]), torch.tensor([3, 1, 2]),
                                            reduction="none")
    txt = torch.nn.functional.cross_entropy(model.lm_head(hidden[0, [2]]), torch.tensor([7]))
    assert target_counts(labels, V, weights).tolist() == [5.5, 1.0]
    loss, parts = split_loss(model, hidden, labels, weights=weights)
    torch.testing.assert_close(parts["image"], ((img * torch.tensor([1.0, 4.0, 0.5])).sum() / 5.5).item())
    torch.testing.assert_close(loss, (img * torch.tensor([1.0, 4.0, 0.5])).sum() / 5.5 + txt)
    torch.testing.assert_close(split_loss(model, hidden, labels)[0], img.mean() + txt)  # no weights: plain means
    # a step's totals from elsewhere (other ranks): each term is divided by them, not by this batch's
    torch.testing.assert_close(split_loss(model, hidden, labels, {"image": 11.0, "text": 2.0}, weights)[0],
                               (img * torch.tensor([1.0, 4.0, 0.5])).sum() / 11.0 + txt / 2)


def test_alignment_sequences_supervise_every_answer_and_nothing_else():
    from xomni.tokenizer.text import TextTokenizer

    tok = TextTokenizer.train_bpe(["what colour is it red two yes no"], 300)
    eos = tok.token_id("<|im_end|>")
    turns = [("what", "red"), ("colour", "two yes")]
    ids, labels, mask = train_tokenizer.encode_pairs(tok, [turns, ("is", "no")], eos)
    q0, a0, q1, a1 = tok.encode("what\n"), tok.encode("red"), tok.encode("colour\n"), tok.encode("two yes")
    assert ids[0, : int(mask[0].sum())].tolist() == q0 + a0 + [eos] + q1 + a1 + [eos]
    assert labels[0, : int(mask[0].sum())].tolist() == [-100] * len(q0) + a0 + [eos] + [-100] * len(q1) + a1 + [eos]
    assert (labels[1][mask[1] == 0] == -100).all() and (labels[1] != -100).sum() == len(tok.encode("no")) + 1


def test_image_embeddings_from_the_tokenizer_are_its_projected_codes_at_the_text_embeddings_scale():
    from xomni.stages.train_ar import tokenizer_image_embeddings

    torch.manual_seed(0)
    vq = SiglipVQ(VQ)
    text = torch.randn(50, 32) * 0.3
    rows = tokenizer_image_embeddings(vq, text)
    unit = torch.nn.functional.normalize(vq.codebook, dim=-1)  # K Dc
    by_conv = vq.post_quant(unit.T[None, :, :, None])[0, :, :, 0].T  # the 1x1 conv over a K x 1 grid: K Da
    scale = rows.norm(dim=-1) / by_conv.norm(dim=-1)
    torch.testing.assert_close(rows, by_conv * scale[:, None])
    assert torch.allclose(scale, scale[0])  # one scale for all rows: their relative geometry is kept
    torch.testing.assert_close(rows.norm(dim=-1).mean(), text.norm(dim=-1).mean())
    with pytest.raises(ValueError, match="adapter width"):
        tokenizer_image_embeddings(vq, torch.randn(5, 64))


def test_alignment_start_takes_the_alignment_lms_language_and_its_reading_of_each_code():
    from xomni.model.unified import UnifiedConfig, UnifiedModel
    from xomni.stages.train_ar import alignment_start, tokenizer_image_embeddings
    from xomni.tokenizer.alignment import AlignmentConfig, AlignmentLM

    torch.manual_seed(0)
    vq = SiglipVQ(VQ).eval()
    lm = AlignmentLM(AlignmentConfig(vocab_size=97, semantic_dim=32, hidden_size=32, num_layers=1, num_heads=2,
                                     num_kv_heads=1, intermediate_size=48)).eval()
    model = UnifiedModel(UnifiedConfig(text_vocab_size=97, codebook_size=32, **AR)).eval()
    codes = torch.randint(0, 16, (6, 4, 4), generator=torch.Generator().manual_seed(1))  # codes 16-31 never occur
    alignment_start(model, lm, vq, codes)
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(ids, head="text"), lm.lm(ids).logits, rtol=1e-5, atol=1e-5)
        k = int(codes[0, 0, 0])
        reading = lm.image_proj(vq.embed_codes(codes)[codes == k].mean(0))  # brute force: code k's mean, projected
        torch.testing.assert_close(model.mm_embed.weight[k], reading, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model.mm_embed.weight[31],
                                   tokenizer_image_embeddings(vq, model.embed_tokens.weight)[31])
    wider = UnifiedModel(UnifiedConfig(text_vocab_size=97, codebook_size=32, **{**AR, "intermediate_size": 64}))
    with pytest.raises(ValueError, match="alignment LM"):
        alignment_start(wider, lm, vq, codes)


def test_a_decoder_run_resumed_longer_is_held_to_the_transformers_rates_too():
    from xomni.schedule import check_resumed_schedule

    rates = train_decoder.group_rates(train_decoder.Config(steps=200, warmup=100, prior_first=50))
    check_resumed_schedule(rates, 200, 300, 30)  # the transformer has not trained yet, the prior is warming up
    with pytest.raises(ValueError, match="planned for 200 steps"):  # its steps 50-79 had a 75-step warm-up
        check_resumed_schedule(rates, 200, 300, 80)


def test_decoder_schedule_starts_the_transformer_after_prior_first():
    cfg = train_decoder.Config(steps=300, warmup=10, prior_first=100)
    lr = train_decoder.lr_at
    assert lr(10, cfg, 1.0, 0) == 1.0 and lr(10, cfg, 1.0, 100) == pytest.approx(0.1)  # prior at peak, rest waits
    assert lr(100, cfg, 1.0, 100) == pytest.approx(0.1) and lr(110, cfg, 1.0, 100) == pytest.approx(1.0)
    assert lr(205, cfg, 1.0, 100) == pytest.approx(0.525)  # halfway through its own cosine
    assert lr(300, cfg, 1.0, 100) == pytest.approx(0.05) and lr(300, cfg, 1.0, 0) == pytest.approx(0.05)


def test_a_run_shorter_than_twice_its_warmup_still_decays_to_its_floor():
    from xomni.schedule import warmup_cosine

    lr = [warmup_cosine(s, 40, 50, 1.0, 0.0) for s in range(41)]
    assert lr[:20] == pytest.approx([(s + 1) / 20 for s in range(20)])  # the warm-up takes the first half
    assert lr[20] == 1.0 and lr[40] == 0.0 and all(a >= b for a, b in zip(lr[20:], lr[21:]))
    assert warmup_cosine(9, 300, 10, 2.0, 0.05) == 2.0 and warmup_cosine(155, 300, 10, 2.0, 0.05) == pytest.approx(1.05)


def test_a_run_resumed_with_other_steps_must_keep_the_rates_it_has_taken(tmp_path, presets, monkeypatch):
    from xomni.schedule import check_resumed_schedule, warmup_cosine

    cosine = lambda k, n: warmup_cosine(k, n, 10, 1.0, 0.1)  # noqa: E731
    constant = lambda k, n: (warmup_cosine(k, n, 50, 1.0, 1.0), 2.0)  # noqa: E731  (two parameter groups)
    check_resumed_schedule(cosine, 300, 300, 120)  # the same length
    check_resumed_schedule(cosine, 300, 600, 10)  # still warming up: the same rates so far
    check_resumed_schedule(cosine, 600, 300, 400)  # past the new end: no step left to take
    with pytest.raises(ValueError, match="rate at step 11 was .* in a run of 600.*--steps 300"):
        check_resumed_schedule(cosine, 300, 600, 120)  # past the warm-up the cosine depends on the run's length
    check_resumed_schedule(constant, 100, 200, 100)  # a constant rate past its warm-up may be extended
    with pytest.raises(ValueError, match="planned for 30 steps"):
        check_resumed_schedule(constant, 30, 200, 20)  # ... but not while a shorter run's warm-up was halved
    train_tokenizer.main(_tok_cfg(tmp_path, steps=2, save_every=1))
    with pytest.raises(ValueError, match="planned for 2 steps"):
        train_tokenizer.main(_tok_cfg(tmp_path, steps=6, save_every=1))  # the stage checks it before a step
    real = _crash_after(monkeypatch, train_tokenizer, 1, "training_batch")  # --lm-only: a new plan, killed at step 3
    with pytest.raises(Crash):
        train_tokenizer.main(_tok_cfg(tmp_path, steps=5, save_every=1, lm_only=True))
    monkeypatch.setattr(train_tokenizer, "training_batch", real)
    with pytest.raises(ValueError, match="planned for 5 steps"):  # resumed, an unfinished --lm-only run keeps its plan
        train_tokenizer.main(_tok_cfg(tmp_path, steps=9, save_every=1, lm_only=True))
    train_tokenizer.main(_tok_cfg(tmp_path, steps=5, save_every=1, lm_only=True))
    train_tokenizer.main(_tok_cfg(tmp_path, steps=7, save_every=1, lm_only=True))  # finished: more alignment, re-planned
    assert train_tokenizer.main(_tok_cfg(tmp_path, steps=2, save_every=1)) == {}  # the recipe rerun: nothing to do


def test_llm_init_refuses_what_would_overwrite_it(tmp_path):
    from xomni.stages import train_ar

    for kw in ({"init": "x"}, {"image_embed_init": "tokenizer"}, {"phase": "text"}):
        cfg = train_ar.Config(**{"phase": "pretrain1", "llm_init": "lm", "out": str(tmp_path / "o"), **kw})
        with pytest.raises(ValueError, match="llm_init"):
            train_ar.main(cfg)
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_scene_mix_draws_each_task_by_its_share_and_the_same_sample_on_a_resume(tmp_path):
    from collections import Counter

    from xomni.data.world import WorldConfig, make_scene, scene_task
    from xomni.stages import train_ar

    scenes = [make_scene(WorldConfig(), "train", i) for i in range(400)]
    tasks = [scene_task(s) for s in scenes]
    assert set(tasks) == {"single", "count", "two", "relation"}
    for s, t in zip(scenes, tasks):  # the task is read off the spec: relation > two groups > a count > one object
        assert t == ("relation" if s.relation else "two" if len(s.groups) == 2 else
                     "count" if s.groups[0].count > 1 else "single")
    order = list(range(400))[::-1]
    pools = {t: [r for r in order if tasks[r] == t] for t in ("single", "count", "two", "relation")}
    shares = train_ar.parse_scene_mix("single=0,count=1,two=1,relation=2")
    assert shares == {"single": 0.0, "count": 0.25, "two": 0.25, "relation": 0.5}
    rows = [train_ar.sample_row(k, order, pools, shares, seed=0) for k in range(2000)]
    drawn = Counter(tasks[r] for r in rows)
    assert drawn["single"] == 0 and 900 < drawn["relation"] < 1100 and 400 < drawn["two"] < 600
    assert rows[1234] == train_ar.sample_row(1234, order, pools, shares, seed=0)  # one sample re-drawn alone
    assert rows != [train_ar.sample_row(k, order, pools, shares, seed=1) for k in range(2000)]
    assert [train_ar.sample_row(k, order, None, None, 0) for k in (0, 1, 400)] == [399, 398, 399]  # no mix: the order
    for bad in ("single=1,count=1,two=1", "single=1,count=1,two=1,relation=-1", "single=1,count=1,two=1,relation=x",
                "single=0,count=0,two=0,relation=0", "single=1,single=1,two=1,relation=1"):
        with pytest.raises(ValueError, match="scene_mix"):
            train_ar.parse_scene_mix(bad)
    with pytest.raises(ValueError, match="scene_mix"):  # refused before anything is written
        train_ar.main(train_ar.Config(scene_mix="one=1", out=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_text_lang_keeps_the_scenes_with_text_in_that_language_in_their_order(tmp_path):
    from xomni.data.world import WorldConfig, make_scene
    from xomni.stages import train_ar

    world = WorldConfig()
    sources = [("train", world, torch.arange(300), None)]
    rows_of = [(0, j) for j in range(300)]
    order = list(range(300))[::-1]
    langs = [getattr(make_scene(world, "train", i).text, "lang", None) for i in range(300)]
    assert {"en", "zh", None} <= set(langs)
    for lang in ("en", "zh"):
        assert train_ar.text_lang_rows(sources, rows_of, order, lang) == [r for r in order if langs[r] == lang]
    with pytest.raises(ValueError, match="text_lang"):
        train_ar.text_lang_rows(sources, rows_of, order, "fr")
    with pytest.raises(ValueError, match="no scene with text"):
        train_ar.text_lang_rows(sources, rows_of, [r for r in order if langs[r] is None], "zh")
    with pytest.raises(ValueError, match="text_lang"):  # refused before anything is written
        train_ar.main(train_ar.Config(text_lang="de", out=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_photo_text_free_keeps_genevals_register_off_scenes_with_text():
    import random

    from xomni.data.sequences import Formatter
    from xomni.data.world import make_scene, prompts
    from xomni.stages.train_ar import world_sample
    from xomni.tokenizer.text import TextTokenizer

    scene = next(s for s in (make_scene(WorldConfig(), "train", i) for i in range(100)) if s.text and s.groups)
    plain = next(s for s in (make_scene(WorldConfig(), "train", i) for i in range(100)) if not s.text and s.groups)
    tok = TextTokenizer.train_bpe([p for s in (scene, plain) for p in prompts(s).values()], 300)
    fmt = Formatter(tok, 16)

    def photo_drawn(s, free: bool) -> int:
        photo = fmt.generation_prompt(prompts(s)["photo"])
        drawn = [world_sample(fmt, "sft", s, [0] * 64, 8, 8, random.Random(k), 1.0, photo_text_free=free).ids
                 for k in range(40)]
        return sum(ids[: len(photo)] == photo for ids in drawn)

    assert photo_drawn(scene, False) > 0 and photo_drawn(scene, True) == 0
    assert photo_drawn(plain, True) > 0  # a scene without text keeps its photo prompt


def test_generation_samples_weigh_each_cell_by_its_role():
    import random

    from xomni.data.sequences import IGNORE, Formatter
    from xomni.data.world import cell_roles, make_scene, prompts
    from xomni.stages.train_ar import world_sample
    from xomni.tokenizer.text import TextTokenizer

    scene = next(s for s in (make_scene(WorldConfig(), "train", i) for i in range(100)) if s.text and s.groups)
    tok = TextTokenizer.train_bpe(list(prompts(scene).values()), 300)
    fmt = Formatter(tok, 16)
    roles = {"object, first cell": 16.0, "object": 4.0, "text": 3.0, "background, all started": 2.0}
    sample = world_sample(fmt, "sft", scene, list(range(64)), 8, 8, random.Random(0), 1.0, role_weights=roles)
    image = [(lab, w) for lab, w in zip(sample.labels, sample.weights) if lab != IGNORE and lab >= tok.vocab_size]
    expected = [roles.get(r, 1.0) for r in cell_roles(scene, 8, 8)]
    assert [w for _, w in image] == expected and {1.0, 2.0, 3.0, 4.0, 16.0} <= set(expected)


def test_quoted_text_answers_are_spelled_by_a_spelling_tokenizer():
    import random

    from xomni.data.batches import understanding_pairs
    from xomni.data.world import make_scene, questions
    from xomni.tokenizer.text import TextTokenizer

    scene = next(s for s in (make_scene(WorldConfig(), "train", i) for i in range(200))
                 if s.text and s.text.lang == "en" and s.text.length == "short")
    said = next(q.answer for q in questions(scene) if q.kind == "text")
    pairs = {a: understanding_pairs(scene, random.Random(0), 20, 0.0, quote_text=a) for a in (False, True)}
    assert [q for q, _ in pairs[False]] == [q for q, _ in pairs[True]]  # the same turns, only the text answer differs
    changed = [(a, b) for (_, a), (_, b) in zip(pairs[False], pairs[True]) if a != b]
    assert changed == [(said, f'"{said}"')]
    tok = TextTokenizer.train_bpe([f"{q} {a}" for q, a in pairs[False]] * 20, 300, spell_quoted=True)
    assert len(tok.encode(f'"{said}"')) == len(said) + 2 and len(tok.encode(said)) < len(said)


def test_decoder_stage_starts_from_a_local_flux_folder(tmp_path, presets, monkeypatch):
    """Paper scale in small: the transformer from a FLUX.1 folder's transformer/, its VAE as the codec (recorded
    in the saved config, so the pipeline reconstructs through it)."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    from xomni.decoder.codec import LatentCodec
    from xomni.pipeline import ImagePipeline

    flux_cfg = DecoderConfig(in_channels=4, patch_px=16, patch_size=2, num_layers=1, num_single_layers=1,
                             attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
                             pooled_projection_dim=8, axes_dims_rope=(4, 6, 6), semantic_dim=32, guidance_embeds=True,
                             vae_path=None, prediction="velocity")
    monkeypatch.setitem(train_decoder.PRESETS, "flux-test", flux_cfg)
    torch.manual_seed(0)
    flux = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                  attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
                                  pooled_projection_dim=8, guidance_embeds=True, axes_dims_rope=(4, 6, 6))
    flux.save_pretrained(tmp_path / "flux" / "transformer")
    AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8),
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  norm_num_groups=4).save_pretrained(tmp_path / "flux" / "vae")
    train_tokenizer.main(_tok_cfg(tmp_path, steps=1))
    shards = tokenize.main(tokenize.Config(tokenizer=str(tmp_path / "tokenizer"), out=str(tmp_path / "shards"),
                                           n=4, height=64, width=64))
    cfg = train_decoder.Config(preset="flux-test", tokenizer=str(tmp_path / "tokenizer"), shards=str(shards),
                               out=str(tmp_path / "d"), steps=1, batch_size=2, eval_every=100, sample_steps=1,
                               flux=str(tmp_path / "flux"), lr=1e-6)  # one small step
    with pytest.raises(ValueError, match="choose one"):
        train_decoder.main(train_decoder.Config(**{**cfg.__dict__, "init": str(tmp_path / "d")}))
    before = {k: v.clone() for k, v in flux.state_dict().items()}
    train_decoder.main(cfg)
    saved = load_component(tmp_path / "d" / "decoder", DecoderConfig, SemanticFlux)
    assert saved.config.vae_path == str((tmp_path / "flux" / "vae").resolve())
    after = saved.flux.state_dict()
    assert all(torch.allclose(after[k], v, atol=1e-4) for k, v in before.items())  # one small step from FLUX's
    assert any(not torch.equal(after[k], v) for k, v in before.items())  # ... and it did train
    assert not torch.allclose(SemanticFlux(flux_cfg).flux.state_dict()["proj_out.weight"], before["proj_out.weight"])
    pipe = ImagePipeline(train_tokenizer.load_tokenizer(tmp_path / "tokenizer"), saved, "tiny")
    assert isinstance(pipe.codec, LatentCodec)


def test_ar_stage_starts_from_a_qwen2_folder_with_a_padded_vocabulary(tmp_path, presets, monkeypatch):
    """Paper scale in small: `--init` a transformers Qwen2 folder whose embedding has more rows than the tokenizer
    has tokens (as Qwen2.5-7B's): the LLM is Qwen's, untouched by pretrain1; image ids start after the padded rows."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from xomni.data.sequences import Formatter
    from xomni.model.unified import UnifiedConfig, UnifiedModel
    from xomni.stages import train_ar
    from xomni.tokenizer.text import TextTokenizer

    train_tokenizer.main(_tok_cfg(tmp_path, steps=1, sizes="64x64"))
    shards = tokenize.main(tokenize.Config(tokenizer=str(tmp_path / "tokenizer"), out=str(tmp_path / "shards"), n=6,
                                           height=64, width=64))
    tok = TextTokenizer.from_file(tmp_path / "text_tokenizer.json")
    padded = tok.vocab_size + 13
    torch.manual_seed(0)
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=padded, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                                        tie_word_embeddings=False))
    qwen.save_pretrained(tmp_path / "qwen")
    train_ar.main(train_ar.Config(phase="pretrain1", init=str(tmp_path / "qwen"), preset="tiny",
                                  text_tokenizer=str(tmp_path / "text_tokenizer.json"), shards=str(shards),
                                  tokenizer=str(tmp_path / "tokenizer"), out=str(tmp_path / "pt1"), steps=2,
                                  batch_size=2, seq_len=200, eval_every=2, eval_n=2))
    model = load_component(tmp_path / "pt1" / "model", UnifiedConfig, UnifiedModel)
    assert model.config.text_vocab_size == padded and model.config.num_vision_layers == 1  # the tiny preset's
    assert model.config.padded_text_rows
    ours, theirs = model.state_dict(), qwen.state_dict()
    assert torch.equal(ours["layers.0.mlp.up_proj.weight"], theirs["model.layers.0.mlp.up_proj.weight"])
    assert torch.equal(ours["lm_head.weight"], theirs["lm_head.weight"])  # pretrain1 trains the vision parts only
    fmt = Formatter(tok.padded_to(padded), model.config.codebook_size)
    ids = fmt.generation("a red circle", [0, 1, 2, 3], 2, 2).ids
    assert [i - padded for i in ids if i >= padded] == [0, 1, 2, 3]  # image code k is id padded + k
    assert tok.padded_to(padded).image_grid(ids).count((-1, -1)) == len(ids) - 4
    with pytest.raises(ValueError, match="cannot hold"):
        tok.padded_to(tok.vocab_size - 1)
    from xomni.engine import Engine

    with pytest.raises(ValueError, match="text tokens"):  # the unpadded tokenizer does not fit the model
        Engine(model, tok)
    drawn = Engine(model, tok.padded_to(padded)).generate_image([tok.encode("a red circle")], 2, 2).tokens
    assert drawn.shape == (1, 4) and bool((drawn >= padded).all())


def test_device_flag_is_checked_before_a_stage_writes_anything(tmp_path, monkeypatch):
    from xomni.devices import resolve_device
    from xomni.stages import train_ar

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="sees no GPU"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        train_ar.main(train_ar.Config(device="gpu", out=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="LOCAL_RANK 2, but only 2 GPUs"):
        resolve_device("cuda", local_rank=2)


@pytest.mark.gpu
def test_training_stages_run_on_a_gpu_and_resume_on_the_cpu(tmp_path, presets, monkeypatch):
    from xomni.model.unified import UnifiedConfig
    from xomni.stages import train_ar

    monkeypatch.setitem(train_ar.PRESETS, "test", UnifiedConfig(**AR))
    train_tokenizer.main(_tok_cfg(tmp_path, steps=4, sizes="64x64", device="cuda"))
    assert json.loads((tmp_path / "tokenizer" / "meta.json").read_text())["config"]["device"] == "cuda:0"
    shards = tokenize.main(tokenize.Config(tokenizer=str(tmp_path / "tokenizer"), out=str(tmp_path / "shards"), n=8,
                                           height=64, width=64))
    train_decoder.main(train_decoder.Config(preset="test", tokenizer=str(tmp_path / "tokenizer"), shards=str(shards),
                                            out=str(tmp_path / "dec"), steps=2, batch_size=2, eval_every=2,
                                            sample_steps=2, device="cuda"))
    assert json.loads((tmp_path / "dec" / "decoder" / "meta.json").read_text())["config"]["device"] == "cuda:0"
    ar = dict(preset="test", phase="pretrain2", text_tokenizer=str(tmp_path / "text_tokenizer.json"),
              shards=str(shards), tokenizer=str(tmp_path / "tokenizer"), out=str(tmp_path / "ar"), batch_size=3,
              seq_len=200, save_every=2, eval_every=2, eval_n=2, warmup=1, final_lr=1.0)  # constant: may be extended
    gpu = train_ar.main(train_ar.Config(**ar, steps=2, device="cuda"))
    assert all(math.isfinite(v) for v in gpu.values())
    train_ar.main(train_ar.Config(**ar, steps=3, device="cpu"))  # resumed on another device
    assert json.loads((tmp_path / "ar" / "model" / "meta.json").read_text())["step"] == 3


def test_eval_suite_reuses_a_folder_only_at_its_temperature():
    from xomni.stages import eval_suite

    header = eval_suite._manifest_header(eval_suite.Config(suite="synth-geneval", source="model", checkpoint="ck"))
    before = {k: v for k, v in header.items() if k != "temperature"}  # written before the setting existed: at 1
    assert header["temperature"] == 1.0 and eval_suite._same_run(before, header)
    colder = eval_suite._manifest_header(eval_suite.Config(suite="synth-geneval", source="model", checkpoint="ck",
                                                           temperature=0.5))
    assert not eval_suite._same_run(before, colder) and not eval_suite._same_run(colder, header)
    assert eval_suite._same_run(colder, colder)
