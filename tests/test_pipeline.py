"""The full pipeline on dummy-sized random components: text -> image, image -> text, conversations, bad input."""

import json
import math
from dataclasses import replace

import pytest
import torch
from PIL import Image

from xomni.checkpoint import load_component, save_component
from xomni.cli import main as cli
from xomni.decoder.flux import DecoderConfig, SemanticFlux
from xomni.engine import Sampling
from xomni.errors import MissingPart
from xomni.model.unified import UnifiedConfig, UnifiedModel
from xomni.pipeline import Pipeline, check_generation_size
from xomni.rewards import CLUTTER_PENALTY
from xomni.tokenizer.siglip_vq import SiglipVQ, SiglipVQConfig
from xomni.tokenizer.text import TextTokenizer


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    tok = TextTokenizer.train_bpe(["a red circle", "what color is the circle? red", "1 2 3 4 5 6 7 8 9"] * 10, 120)
    tok.save(root / "text_tokenizer.json")
    torch.manual_seed(0)
    vq_cfg = SiglipVQConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, position_grid=8,
                            codebook_size=32, codebook_dim=8, adapter_dim=32, adapter_blocks=1)
    save_component(root / "tokenizer", vq_cfg, SiglipVQ(vq_cfg))
    dec_cfg = DecoderConfig(num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                            joint_attention_dim=16, pooled_projection_dim=16, axes_dims_rope=(4, 6, 6), semantic_dim=32)
    save_component(root / "decoder", dec_cfg, SemanticFlux(dec_cfg))
    ar_cfg = UnifiedConfig(text_vocab_size=tok.vocab_size, codebook_size=32, hidden_size=32, num_layers=1,
                           num_vision_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=48, max_positions=256)
    save_component(root / "ar", ar_cfg, UnifiedModel(ar_cfg))
    return root


def test_text_to_image_to_text_and_a_conversation(checkpoint):
    pipe = Pipeline.from_pretrained(checkpoint)
    images, codes = pipe.generate(["a red circle"] * 2, 128, 64, seed=3, decoder_steps=2)
    assert [im.size for im in images] == [(128, 64)] * 2 and codes.shape == (2, 4, 8)
    again, codes2 = pipe.generate(["a red circle"] * 2, 128, 64, seed=3, decoder_steps=2)
    assert torch.equal(codes, codes2)  # seeded
    assert isinstance(pipe.understand(images[0].resize((128, 128)), "what color is the circle?", 5), str)
    conv = pipe.start()
    pipe.draw(conv, "a red circle", 64, 64, decoder_steps=2)
    n = len(conv.ids)
    pipe.ask(conv, "what color is the circle?", max_new_tokens=3)
    assert len(conv.ids) > n and sum(pipe.fmt.vocab.is_image(t) for t in conv.ids) == 16  # image kept as tokens


@pytest.mark.gpu
def test_the_pipeline_and_a_grpo_step_run_on_a_gpu(checkpoint, tmp_path):
    from xomni.stages import train_grpo

    pipe = Pipeline.from_pretrained(checkpoint).to("cuda")
    images, codes = pipe.generate(["a red circle"], 64, 64, seed=3, decoder_steps=2)
    assert images[0].size == (64, 64) and codes.device.type == "cuda"
    assert isinstance(pipe.understand(images[0], "what color is the circle?", 5), str)
    metrics = train_grpo.main(train_grpo.Config(checkpoint=str(checkpoint), out=str(tmp_path / "g"), steps=1,
                                                prompts_per_step=2, rollouts=2, decoder_steps=1, reward_workers=0,
                                                probe_prompts=2, device="cuda", keep_understanding=1.0))
    assert math.isfinite(metrics["reward"])


def test_bad_input_is_refused(checkpoint, tmp_path, capsys):
    pipe = Pipeline.from_pretrained(checkpoint)
    with pytest.raises(ValueError, match="needs an image"):
        pipe.understand(None, "what?")
    with pytest.raises(ValueError, match="empty"):
        pipe.generate([" "])
    with pytest.raises(ValueError, match="context"):
        pipe.generate(["1 2 3 4 5 6 7 8 9 " * 40])
    with pytest.raises(ValueError, match="256 tokens"):  # a short prompt, but 16 x 16 codes after it do not fit
        pipe.generate(["a red circle"], 256, 256)
    with pytest.raises(ValueError, match="at least one token"):
        pipe.understand(Image.new("RGB", (128, 128)), "what?", max_new_tokens=0)
    conv = pipe.start(Image.new("RGB", (128, 128)))  # an answer may stop early: capped at the room left, not refused
    pipe.ask(conv, "what?", max_new_tokens=1000)
    assert len(conv.ids) <= pipe.model.config.max_positions + 2  # the answer, then its end token and a newline
    with pytest.raises(ValueError, match="bad sampling"):
        Sampling(temperature=float("nan"))
    with pytest.raises(ValueError, match="bad sampling"):
        Sampling(cfg=float("inf"))
    with pytest.raises(ValueError, match="bad sampling"):  # guidance away from the prompt is not a setting
        Sampling(cfg=-1.5)
    with pytest.raises(ValueError, match="whole grid"):
        check_generation_size(100, 128)
    with pytest.raises(ValueError, match="aspect"):
        check_generation_size(384, 64)
    assert cli(["generate", "--prompt", "x", "--out", str(tmp_path / "g"), "--size", "130x128"]) == 2
    assert "whole grid" in capsys.readouterr().err and not (tmp_path / "g").exists()
    assert cli(["generate", "--prompt", "x", "--out", str(tmp_path / "g"), "--checkpoint", str(tmp_path)]) == 2
    assert "lacks" in capsys.readouterr().err
    (tmp_path / "file").write_text("mine")
    assert cli(["generate", "--prompt", "x", "--out", str(tmp_path / "file"), "--checkpoint", str(checkpoint)]) == 2
    assert "is a file" in capsys.readouterr().err and (tmp_path / "file").read_text() == "mine"
    assert cli(["render", "--split", "heldout", "--index", "0", "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert cli(["render", "--split", "heldout", "--index", "0", "--out", str(tmp_path / "scene")]) == 2
    assert "no image format" in capsys.readouterr().err and not list(tmp_path.glob("*scene*"))


def test_generate_and_understand_commands(checkpoint, tmp_path, capsys):
    assert cli(["generate", "--prompt", "a red circle", "--out", str(tmp_path / "g"), "--n", "2", "--size", "64x64",
                "--decoder-steps", "1", "--checkpoint", str(checkpoint)]) == 0
    rows = [json.loads(x) for x in (tmp_path / "g" / "manifest.jsonl").read_text().splitlines()]
    assert [r["file"] for r in rows] == ["0000.png", "0001.png"] and (tmp_path / "g" / "0001.png").is_file()
    capsys.readouterr()
    Image.new("RGB", (128, 128), (200, 30, 30)).save(tmp_path / "red.png")
    assert cli(["understand", "--image", str(tmp_path / "red.png"), "--question", "what color?", "--question",
                "how many?", "--max-new-tokens", "3", "--checkpoint", str(checkpoint)]) == 0
    answers = json.loads(capsys.readouterr().out)["answers"]
    assert [a["question"] for a in answers] == ["what color?", "how many?"]
    assert all(isinstance(a["answer"], str) for a in answers)
    assert cli(["understand", "--image", str(tmp_path / "red.png"), "--question", "q", "--question", " ",
                "--checkpoint", str(checkpoint)]) == 2
    assert "empty" in capsys.readouterr().err
    assert cli(["understand", "--image", str(tmp_path / "nope.png"), "--question", "q", "--checkpoint", str(checkpoint)]) == 2


def test_grpo_stage_runs_logs_and_resumes_exactly(checkpoint, tmp_path):
    from xomni.checkpoint import load_component
    from xomni.stages import train_grpo

    def cfg(out, steps):
        return train_grpo.Config(checkpoint=str(checkpoint), out=str(out), steps=steps, prompts_per_step=2,
                                 rollouts=2, updates=2, decoder_steps=1, save_every=1, lr=1e-3, reward_workers=0,
                                 probe_prompts=2, probe_every=2, bf16="false", keep_understanding=1.0,
                                 keep_conversations=2)

    metrics = train_grpo.main(cfg(tmp_path / "a", 2))
    rows = [json.loads(x) for x in (tmp_path / "a" / "grpo_log.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "probe_reward" not in r]
    probes = [r for r in rows if "probe_reward" in r]
    assert [r["step"] for r in steps] == [1, 2] and -CLUTTER_PENALTY <= metrics["reward"] <= 1
    assert {"kl", "clip_fraction", "entropy", "seconds", "reward_alignment"} <= set(steps[-1])
    assert all(r["keep_kl"] > 0 for r in steps)  # the second update's text head has moved off the reference's
    meta = json.loads((tmp_path / "a" / "ar" / "meta.json").read_text())
    assert meta["quote_text_answers"] is False  # carried over from the starting model (which never quoted)
    assert all(0 <= r["derailed"] <= 4 for r in steps) and all(0 <= r["probe_derailed"] <= 4 for r in probes)
    assert [r["step"] for r in probes] == [0, 2]  # the starting model, then every probe_every steps
    assert all(-CLUTTER_PENALTY <= r["probe_reward"] <= r["probe_best_of_g"] <= 1 and r["probe_groups"] == 2
               for r in probes)
    assert Image.open(tmp_path / "a" / "grpo_samples_0002.png").size == (2 * 128, 2 * 128)  # 2 prompts x G 2
    train_grpo.main(cfg(tmp_path / "b", 1))
    first = (tmp_path / "b" / "grpo_log.jsonl").read_text().splitlines()
    train_grpo.main(cfg(tmp_path / "b", 2))  # resumes at step 1: its step-1 record kept, not written again
    assert (tmp_path / "b" / "grpo_log.jsonl").read_text().splitlines()[: len(first)] == first
    assert [json.loads(x)["step"] for x in (tmp_path / "b" / "grpo_log.jsonl").read_text().splitlines()
            if "kl" in json.loads(x)] == [1, 2]
    a = load_component(tmp_path / "a" / "ar", UnifiedConfig, UnifiedModel).state_dict()
    b = load_component(tmp_path / "b" / "ar", UnifiedConfig, UnifiedModel).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_grpo_probe_records_and_never_changes_what_the_policy_learns(checkpoint, tmp_path):
    """The probe samples with its own seeds and its prompts are never trained on: a run with a bigger probe (which
    `bench/grpo_probe.py` shows is a steadier Figure 2b) learns the same weights as one without any."""
    from xomni.checkpoint import load_component
    from xomni.stages import train_grpo

    def run(out, probe_prompts):
        train_grpo.main(train_grpo.Config(checkpoint=str(checkpoint), out=str(tmp_path / out), steps=2,
                                          prompts_per_step=2, rollouts=2, updates=2, decoder_steps=1, lr=1e-3,
                                          reward_workers=0, probe_prompts=probe_prompts, probe_every=1, bf16="false",
                                          keep_understanding=1.0, keep_conversations=2))
        return load_component(tmp_path / out / "ar", UnifiedConfig, UnifiedModel).state_dict()

    probed, bare = run("probed", 3), run("bare", 0)
    rows = [json.loads(x) for x in (tmp_path / "probed" / "grpo_log.jsonl").read_text().splitlines()]
    assert [r["probe_groups"] for r in rows if "probe_reward" in r] == [3, 3, 3]  # steps 0, 1, 2
    assert all(torch.equal(probed[k], bare[k]) for k in probed)
    assert any(not torch.equal(probed[k], p) for k, p in
               load_component(checkpoint / "ar", UnifiedConfig, UnifiedModel).state_dict().items())  # the updates ran


def test_grpo_old_policy_is_the_first_updates_own_forward(checkpoint, tmp_path, monkeypatch):
    """pi_old is the policy before the step's first optimiser step: the first update's forward, detached, serves as
    it (no forward of its own), so every update's ratio is taken against the log-probs the first update saw."""
    from xomni.stages import train_grpo

    seen, forwards = [], []
    loss, logprobs = train_grpo.grpo_loss, train_grpo.image_logprobs

    def recording_loss(logp, old_logp, *args):
        seen.append((logp.detach().clone(), old_logp.clone()))
        return loss(logp, old_logp, *args)

    def counting_logprobs(model, *args, **kwargs):
        forwards.append(torch.is_grad_enabled())
        return logprobs(model, *args, **kwargs)

    monkeypatch.setattr(train_grpo, "grpo_loss", recording_loss)
    monkeypatch.setattr(train_grpo, "image_logprobs", counting_logprobs)
    train_grpo.main(train_grpo.Config(checkpoint=str(checkpoint), out=str(tmp_path / "g"), steps=1, prompts_per_step=2,
                                      rollouts=2, updates=3, decoder_steps=1, lr=1e-2, reward_workers=0,
                                      probe_prompts=0, bf16="false", kl="full"))
    (first, old), *later = seen
    assert len(later) == 2 and torch.equal(old, first)  # the first update's ratio is exactly 1
    assert all(torch.equal(o, first) for _, o in later)  # later updates are held to the same old policy
    assert not torch.equal(later[0][0], first)  # ... which they have moved away from
    assert forwards == [True, False, True, True]  # policy (kept for update 1), reference, updates 2 and 3


def test_grpo_rollouts_take_the_size_asked_for_and_a_size_that_cannot_be_is_refused_first(checkpoint, tmp_path):
    from xomni.stages import train_grpo

    def cfg(size, out="g"):
        return train_grpo.Config(checkpoint=str(checkpoint), out=str(tmp_path / out), steps=1, prompts_per_step=2,
                                 rollouts=2, updates=1, decoder_steps=1, lr=1e-3, reward_workers=0, probe_prompts=2,
                                 bf16="false", size=size)

    assert train_grpo.resolve(train_grpo.Config()).size == "128x128"  # the tiny preset's
    assert train_grpo.resolve(train_grpo.Config(preset="paper")).size == "1024x1024"
    assert train_grpo.resolve(train_grpo.Config(size="128X128")).size == "128x128"  # one spelling for a resume
    # the prompts' scenes are the rollouts' size (the rewards measure an image against its scene)
    pairs = train_grpo.rl_prompts(0, 4, 0.5, 0, train_grpo.rollout_world("64x128"))
    assert {(scene.width, scene.height) for scene, _ in pairs} == {(64, 128)}
    square = train_grpo.rollout_world("128x128")
    assert train_grpo.rl_prompts(0, 4, 0.5, 0) == train_grpo.rl_prompts(0, 4, 0.5, 0, square)  # the default world's
    train_grpo.main(cfg("64x128"))  # width x height: a grid of 8 rows and 4 columns
    assert Image.open(tmp_path / "g" / "grpo_samples_0000.png").size == (2 * 64, 2 * 128)  # G 2 x 2 prompts
    # a grid that fits the context beside the image prefix alone, but not beside the run's own prompts
    pipe = Pipeline.from_pretrained(checkpoint)
    first = train_grpo.rl_prompts(-1, 2, 0.5, 0, train_grpo.rollout_world("240x240")) + train_grpo.rl_prompts(
        0, 2, 0.5, 0, train_grpo.rollout_world("240x240"))
    prefix = len(pipe.tok.image_prefix(15, 15))
    longest = max(len(pipe.fmt.generation_prompt(text)) for _, text in first)
    assert prefix + 225 <= pipe.model.config.max_positions < longest + prefix + 225
    for size, why in (("100x128", "whole grid"), ("240x240", "exceed the model's context"),
                      ("512x512", r"GRPO's rollouts \(--size 512x512\).*outside"), ("big", "WIDTHxHEIGHT")):
        with pytest.raises(ValueError, match=why):
            train_grpo.main(cfg(size, "h"))
        assert not (tmp_path / "h").exists()


def test_keep_understanding_batch_supervises_exactly_the_answers(checkpoint):
    import random

    from xomni.data.world import WorldConfig, caption, make_scene, questions
    from xomni.stages.train_grpo import understanding_batch

    pipe = Pipeline.from_pretrained(checkpoint)
    ids, mask, answer, grid = understanding_batch(pipe, step=3, n=3, seed=0, quote_text=False, turns=1)
    assert grid is None and not (answer & ~mask).any()
    rng = random.Random("grpo-keep/0/3")  # the batch's scenes, drawn as it draws them
    scenes = [make_scene(WorldConfig(), "train", rng.randrange(10**7)) for _ in range(3)]
    for b, scene in enumerate(scenes):
        predicted = ids[b, 1:][answer[b, :-1]].tolist()  # the tokens the answer positions are trained to give
        assert predicted[-1] == pipe.fmt.vocab.eos_id and pipe.fmt.vocab.eos_id not in predicted[:-1]
        said = pipe.tok.decode(predicted[:-1])
        assert said in {q.answer for q in questions(scene)} | {caption(scene)}
        assert not answer[b, -1]  # nothing follows the last token


def test_grpo_judges_in_a_worker_while_sampling_and_evaluates_held_out_suites(checkpoint, tmp_path):
    from xomni.stages import train_grpo

    cfg = train_grpo.Config(checkpoint=str(checkpoint), out=str(tmp_path / "g"), steps=1, prompts_per_step=2,
                            rollouts=2, updates=1, decoder_steps=1, lr=1e-3, chunks=2, reward_workers=1,
                            eval_every=1, eval_suites="synth-text-en", eval_n=2, probe_prompts=0, kl="full",
                            bf16="true",  # bfloat16 decoding and update forwards (emulated where not native)
                            derail_mask=True, neg_scale=0.5)
    train_grpo.main(cfg)
    assert json.loads((tmp_path / "g" / "ar" / "meta.json").read_text())["config"]["bf16"] == "true"
    rows = [json.loads(x) for x in (tmp_path / "g" / "grpo_log.jsonl").read_text().splitlines()]
    assert rows[0]["failed_chunks"] == 0 and rows[0]["excluded"] == 0 and "judge_wait" in rows[0]["seconds"]
    assert rows[0]["kl_full"] >= 0  # the whole-softmax KL took k3's place
    assert 0 <= rows[0]["pg_masked"] <= 1
    assert 0 <= rows[1]["eval/synth-text-en"] <= 1
    assert (tmp_path / "g" / "eval" / "step_0001" / "synth-text-en" / "metrics.json").is_file()
    assert Pipeline.from_pretrained(tmp_path / "g").model is not None  # the run folder is a checkpoint


def test_grpo_killed_during_its_evaluations_finishes_them_on_resume(checkpoint, tmp_path, monkeypatch):
    from xomni.stages import train_grpo

    cfg = train_grpo.Config(checkpoint=str(checkpoint), out=str(tmp_path / "g"), steps=2, prompts_per_step=2,
                            rollouts=2, updates=1, decoder_steps=1, save_every=1, lr=1e-3, reward_workers=0,
                            eval_every=1, eval_suites="synth-text-en", eval_n=2, probe_prompts=2, probe_every=1,
                            bf16="false")
    real = train_grpo.evaluate_suites

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed during the evaluations")

    monkeypatch.setattr(train_grpo, "evaluate_suites", killed)
    with pytest.raises(KeyboardInterrupt):
        train_grpo.main(cfg)  # step 1 checkpointed and probed, its evaluations never logged
    monkeypatch.setattr(train_grpo, "evaluate_suites", real)
    train_grpo.main(cfg)
    rows = [json.loads(x) for x in (tmp_path / "g" / "grpo_log.jsonl").read_text().splitlines()]
    evals = [r["step"] for r in rows if "eval/synth-text-en" in r]
    probes = [r["step"] for r in rows if "probe_reward" in r]
    assert evals == [1, 2] and probes == [0, 1, 2]  # step 1's evaluations finished, nothing logged twice
    train_grpo.main(replace(cfg, steps=1, resume=False))  # starting over: the earlier run's state and log go
    rows = [json.loads(x) for x in (tmp_path / "g" / "grpo_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "probe_reward" in r] == [0, 1]
    assert torch.load(tmp_path / "g" / "grpo_state.pt", weights_only=False)["step"] == 1


def test_grpo_drops_a_group_whose_reward_failed_and_updates_on_the_rest(checkpoint, tmp_path, monkeypatch):
    import math

    import torch

    from xomni.rewards import pool
    from xomni.stages import train_grpo

    judge = pool._score

    def failing(rollouts):  # the first prompt's alignment fails (NaN) on every rollout
        out = judge(rollouts)
        first = rollouts[0].prompt
        out["alignment"] = [math.nan if r.prompt == first else x for r, x in zip(rollouts, out["alignment"])]
        return out

    monkeypatch.setattr(pool, "_score", failing)
    threads = torch.get_num_threads()  # 1 in the tests (conftest)
    cfg = train_grpo.Config(checkpoint=str(checkpoint), out=str(tmp_path / "g"), steps=1, prompts_per_step=2,
                            rollouts=2, updates=1, decoder_steps=1, lr=1e-3, chunks=1, reward_workers=0,
                            probe_prompts=0, kl="full")
    torch.set_num_threads(2)
    try:
        train_grpo.main(cfg)
        assert torch.get_num_threads() == 2  # judging in this process leaves its threads alone
    finally:
        torch.set_num_threads(threads)
    row = json.loads((tmp_path / "g" / "grpo_log.jsonl").read_text().splitlines()[0])
    assert row["dropped_groups"] == 1 and row["kl_full"] >= 0 and "clip_fraction" in row  # updated on the other
    calls = []

    def down_after_one_step(rollouts):  # step 1 is judged; every later step's alignment fails
        calls.append(1)
        return judge(rollouts) if len(calls) == 1 else {**judge(rollouts), "alignment": [math.nan] * len(rollouts)}

    monkeypatch.setattr(pool, "_score", down_after_one_step)
    failing_cfg = replace(cfg, out=str(tmp_path / "f"), steps=5, stop_after_failed_steps=2, save_every=10)
    with pytest.raises(RuntimeError, match="every group's reward failed in 2 steps in a row.*resumes at step 1"):
        train_grpo.main(failing_cfg)
    rows = [json.loads(x) for x in (tmp_path / "f" / "grpo_log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["reward"], r["reward_best_of_g"], r["dropped_groups"]) for r in rows][1:] == \
        [(2, None, None, 2), (3, None, None, 2)]  # nothing to average: None, not 0 or NaN
    # the update of step 1 is kept (no checkpoint was due before step 5); the failed steps are redone
    assert torch.load(tmp_path / "f" / "grpo_state.pt", weights_only=False)["step"] == 1
    monkeypatch.setattr(pool, "_score", lambda rollouts: {**judge(rollouts), "alignment": [math.nan] * len(rollouts)})
    with pytest.raises(RuntimeError, match="resumes at step 0"):  # every step failed: nothing to save
        train_grpo.main(replace(failing_cfg, out=str(tmp_path / "z")))
    assert not (tmp_path / "z" / "grpo_state.pt").exists()
    monkeypatch.setattr(pool, "_score", judge)
    train_grpo.main(failing_cfg)
    rows = [json.loads(x) for x in (tmp_path / "f" / "grpo_log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["dropped_groups"]) for r in rows] == [(s, 0) for s in range(1, 6)]


def test_grpo_judges_a_short_step0_probe_again_and_stops_before_training_if_it_stays_short(
        checkpoint, tmp_path, monkeypatch):
    """Figure 2b reads every probe against step 0's on the prompts they share, and no later step redoes step 0's."""
    import math

    import torch

    from xomni.rewards import pool
    from xomni.stages import train_grpo

    judge, calls = pool._score, []

    def first_prompt_fails(times):
        def score(rollouts):  # chunks=1: one call a probe or a step
            calls.append(1)
            out = judge(rollouts)
            if len(calls) <= times:
                out["alignment"] = [math.nan if r.prompt == rollouts[0].prompt else x
                                    for r, x in zip(rollouts, out["alignment"])]
            return out
        return score

    cfg = train_grpo.Config(checkpoint=str(checkpoint), out=str(tmp_path / "g"), steps=1, prompts_per_step=2,
                            rollouts=2, updates=1, decoder_steps=1, chunks=1, reward_workers=0, probe_prompts=2,
                            probe_every=0, bf16="false")
    monkeypatch.setattr(pool, "_score", first_prompt_fails(1))
    train_grpo.main(cfg)
    rows = [json.loads(x) for x in (tmp_path / "g" / "grpo_log.jsonl").read_text().splitlines()]
    assert rows[0] == {"step": 0, "probe_attempt_groups": 1}
    assert rows[1]["step"] == 0 and rows[1]["probe_groups"] == 2 and rows[2]["step"] == 1
    calls.clear()
    monkeypatch.setattr(pool, "_score", first_prompt_fails(2))
    with pytest.raises(RuntimeError, match="step-0 probe was scored on 1 of 2 prompts, twice"):
        train_grpo.main(replace(cfg, out=str(tmp_path / "f")))
    assert len(calls) == 2 and not (tmp_path / "f" / "grpo_state.pt").exists()  # no step was taken


def test_grpo_links_the_parts_of_the_checkpoint_it_samples_with(tmp_path):
    from xomni.stages.train_grpo import link_parts

    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    for root in (a, b):
        (root / "tokenizer").mkdir(parents=True), (root / "decoder").mkdir(), (root / "text_tokenizer.json").touch()
    out.mkdir()
    link_parts(a, out)
    link_parts(b, out)  # a rerun into the same folder from another checkpoint: its parts, not the first one's
    assert all((out / p).resolve() == (b / p).resolve() for p in ("tokenizer", "decoder", "text_tokenizer.json"))
    (out / "decoder").unlink()
    (out / "decoder").symlink_to(tmp_path / "gone")  # dangling
    link_parts(b, out)
    assert (out / "decoder").resolve() == (b / "decoder").resolve()
    (out / "tokenizer").unlink()
    (out / "tokenizer").mkdir()
    with pytest.raises(FileExistsError, match="is not a link to"):
        link_parts(b, out)


def test_a_crashed_reward_worker_fails_its_chunk_not_the_run():
    import math

    from xomni.rewards import combine
    from xomni.rewards.pool import _Done, gather

    class Crashed:
        def get(self, timeout=None):
            raise RuntimeError("worker died")

    ok = {"ocr": [None, 1.0], "alignment": [0.5, 0.5], "consistency": [1.0, 0.0]}
    parts, failed, hung = gather([(2, _Done(ok)), (3, Crashed())])
    assert failed == 1 and not hung and len(parts["ocr"]) == 5 and all(math.isnan(x) for x in parts["ocr"][2:])
    rewards, stats = combine(parts, {"ocr": 1.0, "alignment": 1.0, "consistency": 0.5})
    assert stats["excluded"] == 3 and all(math.isfinite(r) for r in rewards[:2])


def test_suites_on_the_unified_model(checkpoint, tmp_path):
    from xomni.stages import eval_suite

    text = eval_suite.main(eval_suite.Config(suite="synth-text-en", out=str(tmp_path / "t"), checkpoint=str(checkpoint),
                                             n=2, source="model", steps=1, cfg=1.5))
    assert text["source"] == "model" and text["n"] == 2 and 0 <= text["score"] <= 1
    assert text["cfg"] == 1.5 and text["min_p"] == 0.03  # the sampler is part of the result
    sampled = tmp_path / "t" / "sampled.jsonl"
    counts = [json.loads(x) for x in sampled.read_text().splitlines()]
    assert [c["id"] for c in counts] == ["synth-text-en/0000", "synth-text-en/0001"]
    assert text["derailed"] == sum(c["flat_positions"] >= 8 for c in counts) / 2 and "derailed/length/short" in text
    # images made before the counts were kept: a rerun samples their tokens again (same seeds) and counts the same
    sampled.unlink()
    image = tmp_path / "t" / "images" / "0000.png"
    made = image.stat().st_mtime_ns
    again = eval_suite.main(eval_suite.Config(suite="synth-text-en", out=str(tmp_path / "t"), checkpoint=str(checkpoint),
                                              n=2, source="model", steps=1, cfg=1.5))
    assert [json.loads(x) for x in sampled.read_text().splitlines()] == counts and image.stat().st_mtime_ns == made
    assert again["derailed"] == text["derailed"]
    # a bad setting changes the header, but is refused before the folder's results are replaced
    for bad in ({"n": 0}, {"split": "bogus"}, {"ocr": "tesseractt"}, {"min_p": 1.5}, {"steps": 0},
                {"checkpoint": str(tmp_path / "typo")}):
        with pytest.raises((ValueError, MissingPart)):
            eval_suite.main(eval_suite.Config(**{"suite": "synth-text-en", "out": str(tmp_path / "t"),
                                                 "checkpoint": str(checkpoint), "n": 2, "source": "model", "steps": 1,
                                                 "cfg": 1.5, **bad}))
        assert image.stat().st_mtime_ns == made and sampled.is_file() and (tmp_path / "t" / "judged.jsonl").is_file()
    # reconstructions: each item decoded with its own noise, whatever batch it is in
    recon = {b: eval_suite.main(eval_suite.Config(suite="synth-text-en", out=str(tmp_path / f"rc{b}"), n=2, steps=1,
                                                  checkpoint=str(checkpoint), source="reconstructions", batch_size=b))
             for b in (1, 2)}
    assert recon[1]["score"] == recon[2]["score"]
    assert all((tmp_path / "rc1" / "images" / f).read_bytes() == (tmp_path / "rc2" / "images" / f).read_bytes()
               for f in ("0000.png", "0001.png"))
    # a checkpoint rebuilt at the same path (its AR weights rewritten) is another model: sampled afresh
    import shutil

    rebuilt = tmp_path / "rebuilt"
    shutil.copytree(checkpoint, rebuilt)
    run = eval_suite.Config(suite="synth-text-en", out=str(tmp_path / "r"), checkpoint=str(rebuilt), n=2,
                            source="model", steps=1)
    drawn = tmp_path / "r" / "images" / "0000.png"
    eval_suite.main(run)
    first = drawn.stat().st_mtime_ns
    eval_suite.main(run)
    assert drawn.stat().st_mtime_ns == first  # the same weights: reused
    weights = rebuilt / "ar" / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # the same weights written again (a rerun's publish)
    eval_suite.main(run)
    assert drawn.stat().st_mtime_ns == first
    model = load_component(rebuilt / "ar", UnifiedConfig, UnifiedModel)
    with torch.no_grad():
        model.mm_head.weight.add_(0.01)
    save_component(rebuilt / "ar", model.config, model)  # other weights at the same path
    eval_suite.main(run)
    assert drawn.stat().st_mtime_ns != first
    vqa = eval_suite.main(eval_suite.Config(suite="synth-vqa", out=str(tmp_path / "v"), checkpoint=str(checkpoint), n=2))
    assert vqa["judge"] == "unified-model"


def test_claims_stage_scores_sft_and_rl_and_reuses_its_evaluations(checkpoint, tmp_path):
    from xomni.stages import eval_claims, train_grpo

    train_grpo.main(train_grpo.Config(checkpoint=str(checkpoint), out=str(tmp_path / "g"), steps=2, prompts_per_step=2,
                                      rollouts=2, updates=1, decoder_steps=1, reward_workers=0, probe_prompts=2,
                                      probe_every=2))
    cfg = eval_claims.Config(sft=str(checkpoint), rl=str(tmp_path / "g"), out=str(tmp_path / "c"), n=2,
                             cfg_scales="1,1.5", steps=1)
    result = eval_claims.main(cfg)
    report = json.loads((tmp_path / "c" / "claims.json").read_text())
    assert set(report["scores"]) == {"sft", "rl_g"}
    assert set(report["scores"]["sft"]) == {f"{s}@{c}" for s in ("synth-geneval", "synth-text-en", "synth-text-zh")
                                            for c in ("1", "1.5")} | {"synth-vqa@1"}
    assert set(report["derailed"]["rl_g"]) == set(report["scores"]["rl_g"]) - {"synth-vqa@1"}
    assert all(0 <= v <= 1 for row in report["derailed"].values() for v in row.values())
    assert "| derailed images |" in (tmp_path / "c" / "claims.md").read_text()
    assert result["claims"] == len(report["claims"]) == 8  # Fig. 2b, three deltas, three CFG gaps, VQA
    assert (tmp_path / "c" / "figure2b.svg").read_text().startswith("<svg")
    image = tmp_path / "c" / "rl_g" / "synth-geneval_cfg1.5" / "images" / "0000.png"
    before, table = image.stat().st_mtime_ns, (tmp_path / "c" / "claims.md").read_text()
    eval_claims.main(cfg)  # a rerun reuses every evaluation
    assert image.stat().st_mtime_ns == before and (tmp_path / "c" / "claims.md").read_text() == table
    with pytest.raises(ValueError, match="include 1"):
        eval_claims.main(eval_claims.Config(sft=str(checkpoint), rl=str(tmp_path / "g"), cfg_scales="1.5,3"))
    with pytest.raises(ValueError, match="bad sampling"):  # before the first evaluation, not at the bad scale's turn
        eval_claims.main(eval_claims.Config(sft=str(checkpoint), rl=str(tmp_path / "g"), cfg_scales="1,-2",
                                            out=str(tmp_path / "neg")))
    assert not (tmp_path / "neg").exists()
    # one suite: its rows reuse the evaluations above, the text claims are named as not measured
    geneval = eval_claims.main(eval_claims.Config(sft=str(checkpoint), rl=str(tmp_path / "g"), out=str(tmp_path / "c"),
                                                  n=2, cfg_scales="1,1.5", steps=1, suites="synth-geneval"))
    assert geneval["claims"] == 4 and image.stat().st_mtime_ns == before  # Fig. 2b, GenEval delta and gap, VQA
    assert "Not measured (left out by --suites): synth-text-en, synth-text-zh." in (tmp_path / "c" / "claims.md").read_text()
    with pytest.raises(ValueError, match="--suites"):
        eval_claims.main(eval_claims.Config(sft=str(checkpoint), rl=str(tmp_path / "g"), suites="synth-dpg"))
    with pytest.raises(FileNotFoundError, match="GRPO log"):
        eval_claims.main(eval_claims.Config(sft=str(checkpoint), rl=str(checkpoint)))
    log = tmp_path / "g" / "grpo_log.jsonl"
    log.write_text(log.read_text() + '{"step": 3, "rew')  # a run killed mid-line: its whole lines still count
    assert eval_claims.main(cfg)["claims"] == 8 and image.stat().st_mtime_ns == before
    log.write_text("".join(line + "\n" for line in log.read_text().splitlines()[:-1] if "probe_reward" not in line))
    with pytest.raises(ValueError, match="no scored step-0 probe"):  # refused before any evaluation is spent
        eval_claims.main(eval_claims.Config(sft=str(checkpoint), rl=str(tmp_path / "g"), out=str(tmp_path / "np")))
    assert not (tmp_path / "np").exists()


def test_rl_prompts_come_from_training_scenes_in_their_proportions():
    """GRPO's prompts never reuse what the held-out suites reserve: training-split scenes only, no reserved colour
    and shape pair or word; text_share of them ask for text (half short, half long); every level is drawn, and a
    prompt asking for text always names it (never the `photo` level)."""
    from xomni.data.world import is_reserved_combo, is_reserved_word, prompts
    from xomni.stages.train_grpo import rl_prompts

    pairs = [p for step in range(40) for p in rl_prompts(step, 4, 0.5, seed=0)]
    levels, text_levels = set(), set()
    for scene, prompt in pairs:
        assert scene.split == "train"
        assert not any(is_reserved_combo(g.color, g.shape) for g in scene.groups)
        if scene.text is not None and scene.text.lang == "en":
            assert not any(is_reserved_word(w) for w in scene.text.text.split())
        # a scene's levels may coincide (a short and a medium prompt without text): every level that matches
        (levels if scene.text is None else text_levels).update(k for k, v in prompts(scene).items() if v == prompt)
        if scene.text is not None:
            assert "".join(scene.text.lines).replace(" ", "") in prompt.replace(" ", "")
    kinds = [scene.text.length if scene.text is not None else None for scene, _ in pairs]
    assert kinds.count("short") == kinds.count("long") == kinds.count(None) // 2 == 40
    assert levels == {"short", "medium", "dense", "photo"} and text_levels == {"short", "medium", "dense"}


def test_rl_prompts_mixes_split_the_prompts_exactly(tmp_path):
    """With a text mix, each step's text prompts are split into the named kinds by whole counts (largest remainders,
    ties drawn by the step's generator, so every kind gets its share over steps), and with a scene mix the other
    prompts by compositional task; without them, the prompts are the ones runs before the mixes drew. A bad mix is
    refused before the run writes anything."""
    import random
    from collections import Counter

    from xomni.data.world import scene_task
    from xomni.stages import train_grpo
    from xomni.stages.train_grpo import rl_prompts, split_count

    mix = "en-short=1,en-long=1,zh-short=1,zh-long=3"
    per_step = [Counter((s.text.lang, s.text.length) if s.text else None for s, _ in rl_prompts(step, 16, 0.5, 0,
                                                                                               text_mix=mix))
                for step in range(30)]
    for counts in per_step:
        assert counts[None] == 8 and counts[("zh", "long")] == 4  # 8 text prompts: 4 long Chinese, the rest 4/3 each
        assert sorted(counts[k] for k in [("en", "short"), ("en", "long"), ("zh", "short")]) == [1, 1, 2]
    total = sum(per_step, Counter())  # 40 each expected: the extra one goes to each kind in turn, by chance
    assert all(33 <= total[k] <= 47 for k in [("en", "short"), ("en", "long"), ("zh", "short")]), total
    assert split_count(10, {"a": 0.1, "b": 0.2, "c": 0.7}, random.Random(0)) == {"a": 1, "b": 2, "c": 7}
    assert sum(split_count(7, {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}, random.Random(1)).values()) == 7
    recipe = {"single": 1 / 6, "count": 1 / 6, "two": 1 / 3, "relation": 1 / 3}  # the recipe's 1:1:2:2 of 8 prompts
    steps = [split_count(8, recipe, random.Random(s)) for s in range(3000)]
    assert all(sum(c.values()) == 8 and all(abs(c[k] - 8 * v) < 1 for k, v in recipe.items()) for c in steps)
    for k, v in recipe.items():  # on average each its share (the largest remainders gave 1:1:3:3 every step)
        assert abs(sum(c[k] for c in steps) / len(steps) - 8 * v) < 0.05
    only_zh = rl_prompts(0, 8, 1.0, 0, text_mix="en-short=0,en-long=0,zh-short=0,zh-long=1")
    assert all(s.text.lang == "zh" and s.text.length == "long" for s, _ in only_zh)
    plain = rl_prompts(0, 16, 0.5, 0)  # no mix: the language as the world draws it, half short and half long
    assert Counter(s.text.length if s.text else None for s, _ in plain) == {None: 8, "short": 4, "long": 4}
    # ... and the very scenes drawn before the mixes existed (read off rl_prompts at a951b60), so old runs resume
    assert [s.seed.rsplit("/", 1)[1] for s, _ in rl_prompts(0, 4, 0.5, 0)] == ["4599920", "8429328", "1643438",
                                                                               "7135737"]
    scenes = [s for s, _ in rl_prompts(0, 16, 0.5, 0, scene_mix="single=0,count=1,two=1,relation=2")]
    assert Counter(scene_task(s) for s in scenes if s.text is None) == {"relation": 4, "two": 2, "count": 2}
    assert Counter(s.text.length for s in scenes if s.text is not None) == {"short": 4, "long": 4}
    for bad in ("en-short=1,en-long=1,zh-short=1", "en-short=1,en-long=1,zh-short=1,zh-long=-1", "zh=1"):
        with pytest.raises(ValueError, match="text_mix"):
            train_grpo.main(train_grpo.Config(text_mix=bad, out=str(tmp_path / "o")))
    with pytest.raises(ValueError, match="scene_mix"):
        train_grpo.main(train_grpo.Config(scene_mix="two=1", out=str(tmp_path / "o")))
    with pytest.raises(ValueError, match="OCR rule"):
        train_grpo.main(train_grpo.Config(ocr_rule="f1", out=str(tmp_path / "o")))
    with pytest.raises(ValueError, match="no prompt asks for text"):  # a mix that could change nothing
        train_grpo.main(train_grpo.Config(text_mix=mix, text_share=0.0, out=str(tmp_path / "o")))
    with pytest.raises(ValueError, match="every prompt asks for text"):
        train_grpo.main(train_grpo.Config(scene_mix="single=1,count=1,two=1,relation=1", text_share=1.0,
                                          out=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_rl_prompts_name_a_kind_the_world_cannot_draw(monkeypatch):
    """A long text needs two words on a line or two lines of characters: at 64 x 64 px the world draws none, and
    GRPO's prompts say so instead of drawing forever."""
    from xomni.data.world import WorldConfig
    from xomni.stages import train_grpo

    monkeypatch.setattr(train_grpo, "MAX_DRAWS", 300)
    with pytest.raises(ValueError, match=r"no \('text', None, 'long'\) scene in 300 training scenes of 64x64 px"):
        train_grpo.rl_prompts(0, 2, 1.0, 0, WorldConfig(width=64, height=64))
    assert len(train_grpo.rl_prompts(0, 2, 0.0, 0, WorldConfig(width=64, height=64))) == 2  # scenes without text


def test_a_checkpoint_is_read_by_its_own_presets_image_rules(checkpoint, tmp_path):
    import json
    import shutil

    from xomni.pipeline import checkpoint_preset
    from xomni.tokenizer.siglip_vq import PRESETS

    assert checkpoint_preset(checkpoint) == "tiny" and checkpoint_preset(tmp_path / "nothing") == "tiny"
    paper = tmp_path / "paper"
    shutil.copytree(checkpoint, paper)
    meta = paper / "tokenizer" / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "config": {"preset": "paper"}}))
    assert checkpoint_preset(paper) == "paper"
    assert Pipeline.from_pretrained(paper).preset == "paper"
    with pytest.raises(ValueError, match="minimum side of 128"):  # the paper rule refuses what tiny takes
        Pipeline.from_pretrained(paper).codes_of(Image.new("RGB", (64, 64)))
    meta.unlink()  # no meta: the preset whose tokenizer sizes the config has
    sizes = {k: getattr(PRESETS["paper"], k) for k in ("hidden_size", "num_layers", "codebook_size")}
    config = paper / "tokenizer" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), **sizes}))
    assert checkpoint_preset(paper) == "paper"


def test_publish_ships_the_sft_model_as_a_checkpoint_folder_linked_to_its_parts(checkpoint, tmp_path):
    import os
    import shutil

    from xomni.stages import publish

    run = tmp_path / "run"
    shutil.copytree(checkpoint, run)
    shutil.copytree(checkpoint / "decoder", run / "alignment_lm")  # any component stands in for the alignment LM
    config = json.loads((checkpoint / "ar" / "config.json").read_text())
    torch.manual_seed(1)
    save_component(tmp_path / "sft_ar", UnifiedConfig(**config), UnifiedModel(UnifiedConfig(**config)))
    ship = tmp_path / "ship"
    meta = run / "decoder" / "meta.json"  # the image side's reconstruction metrics, as an earlier publish left them
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "eval_reconstruction": {"ocr_en": 0.5}}))
    base = dict(dest=str(ship), ar=str(checkpoint / "ar"), int8=True)
    publish.main(publish.Config(run=str(run), **base, sft_ar=str(tmp_path / "sft_ar")))
    for part in ("ar", "sft/ar", "tokenizer"):  # without --metrics, every part keeps the decoder's
        assert json.loads((ship / part / "meta.json").read_text())["eval_reconstruction"] == {"ocr_en": 0.5}
    assert {n: os.readlink(ship / "sft" / n) for n in publish.SFT_LINKS} == {n: os.path.join("..", n)
                                                                               for n in publish.SFT_LINKS}
    sft = load_component(ship / "sft" / "ar", UnifiedConfig, UnifiedModel).state_dict()
    policy = load_component(ship / "ar", UnifiedConfig, UnifiedModel).state_dict()
    loaded = Pipeline.from_pretrained(ship / "sft").model.state_dict()  # a checkpoint folder every command reads
    assert all(torch.equal(loaded[k], sft[k]) for k in sft) and any(not torch.equal(sft[k], policy[k]) for k in sft)
    weights = (ship / "sft" / "ar" / "model.safetensors").read_bytes()
    # runs/cpu_tiny_rl.sh from the shipped SFT model publishes it again from where it lies: the same weights, links
    publish.main(publish.Config(run=str(ship / "sft"), **base, sft_ar=str(ship / "sft" / "ar")))
    assert (ship / "sft" / "ar" / "model.safetensors").read_bytes() == weights
    assert all((ship / "sft" / n).is_symlink() for n in publish.SFT_LINKS)
    result = publish.main(publish.Config(run=str(run), **base))  # without one: sft/ left as it was, and said
    assert result["not_shipped_here"] == ["sft"] and all((ship / "sft" / n).is_symlink() for n in publish.SFT_LINKS)
    shutil.rmtree(ship / "sft")
    (ship / "sft").symlink_to(run)  # a link to another folder is not written through
    with pytest.raises(ValueError, match="is a link"):
        publish.main(publish.Config(run=str(run), **base, sft_ar=str(tmp_path / "sft_ar")))
    assert (run / "tokenizer").is_dir() and not (run / "tokenizer").is_symlink()
