"""The engine: image mode emits exactly rows*cols image tokens, caching is exact, seeds reproduce, filters are right."""

import math

import pytest
import torch

from xomni.engine import (DecodeWeights, Engine, Sampling, derailed, filter_logits, flat_positions, guided_logits,
                          left_pad, sample)
from xomni.model.unified import KVCache, UnifiedConfig, UnifiedModel
from xomni.tokenizer.text import TextTokenizer


@pytest.fixture(scope="module")
def engine():
    tok = TextTokenizer.train_bpe(["a red circle on white", "1 2 3 4 5 6 7 8 9 0", "what color is it"] * 20, 120)
    torch.manual_seed(0)
    model = UnifiedModel(UnifiedConfig(text_vocab_size=tok.vocab_size, codebook_size=37, hidden_size=32, num_layers=2,
                                       num_vision_layers=1, num_heads=4, num_kv_heads=2, intermediate_size=48,
                                       max_positions=96))
    return Engine(model, tok)


def _prompts(engine):
    return [engine.tok.encode("a red circle"), engine.tok.encode("what")]


def test_image_mode_emits_exactly_the_grid_of_image_tokens(engine):
    out = engine.generate_image(_prompts(engine), rows=3, cols=4, generator=torch.Generator().manual_seed(0))
    assert out.tokens.shape == (2, 12) and out.logprobs.shape == (2, 12)
    assert bool(engine.vocab.is_image(out.tokens).all())
    assert bool((out.logprobs <= 0).all())


def test_text_mode_refuses_cfg_rather_than_ignore_it(engine):
    with pytest.raises(ValueError, match="CFG .* guides image tokens only"):
        engine.generate_text(_prompts(engine), 3, Sampling(cfg=2.0))


def test_seeded_sampling_reproduces(engine):
    a = engine.generate_image(_prompts(engine), 2, 2, generator=torch.Generator().manual_seed(7))
    b = engine.generate_image(_prompts(engine), 2, 2, generator=torch.Generator().manual_seed(7))
    c = engine.generate_image(_prompts(engine), 2, 2, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.logprobs, b.logprobs)
    assert not torch.equal(a.tokens, c.tokens)


def test_greedy_cached_generation_matches_full_forwards(engine):
    greedy = Sampling(temperature=0, min_p=0)
    prompt = _prompts(engine)[0]
    out = engine.generate_image([prompt], 2, 3, greedy)
    seq = prompt + engine.tok.image_prefix(2, 3)
    V = engine.vocab.text_vocab_size
    with torch.no_grad():
        for t in out.tokens[0].tolist():
            logits = engine.model(torch.tensor([seq]))[0, -1]
            assert t == V + int(logits[V:].argmax())
            seq.append(t)


def test_top_is_the_full_forwards_most_likely_code_probability(engine):
    prompt = _prompts(engine)[0]
    out = engine.generate_image([prompt], 2, 3, Sampling(), torch.Generator().manual_seed(4))
    seq = prompt + engine.tok.image_prefix(2, 3)
    V = engine.vocab.text_vocab_size
    with torch.no_grad():
        for t, top in zip(out.tokens[0].tolist(), out.top[0].tolist()):
            logits = engine.model(torch.tensor([seq]))[0, -1]
            assert top == pytest.approx(float(logits[V:].softmax(-1).max()), abs=1e-5)
            seq.append(t)


def test_flat_positions_and_derailed_count_low_top_probabilities():
    top = torch.tensor([[0.05, 0.5, 0.09, 0.1], [0.9, 0.8, 0.7, 0.02], [0.01, 0.02, 0.03, 0.04]])
    assert flat_positions(top).tolist() == [2, 1, 4]
    assert derailed(top, positions=2).tolist() == [True, False, True]
    assert derailed(top, flat=0.95, positions=4).tolist() == [True, True, True]


def test_batched_left_padding_matches_each_prompt_alone(engine):
    greedy = Sampling(temperature=0, min_p=0)
    both = engine.generate_image(_prompts(engine), 2, 2, greedy)
    for b, p in enumerate(_prompts(engine)):
        assert torch.equal(engine.generate_image([p], 2, 2, greedy).tokens[0], both.tokens[b])


def test_cfg_runs_the_unconditional_prefix_and_stays_in_image_mode(engine):
    out = engine.generate_image(_prompts(engine), 2, 2, Sampling(cfg=3.0), torch.Generator().manual_seed(0))
    assert bool(engine.vocab.is_image(out.tokens).all())
    cond, uncond = torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    assert torch.equal(guided_logits(cond, uncond, 1.5), torch.tensor([[2.5, -0.5]]))


def test_text_mode_stops_and_never_emits_image_tokens(engine):
    out = engine.generate_text(_prompts(engine), 6, generator=torch.Generator().manual_seed(0))
    assert not bool(engine.vocab.is_image(out.tokens).any()) and out.tokens.shape[1] <= 6


def test_cfg_draws_the_arg_max_of_the_prompts_logits_guided_away_from_the_bare_prefix(engine):
    V, (rows, cols) = engine.vocab.text_vocab_size, (2, 2)
    prefix = engine.tok.image_prefix(rows, cols)
    out = engine.generate_image(_prompts(engine), rows, cols, Sampling(temperature=0, min_p=0, cfg=3.0))
    for b, prompt in enumerate(_prompts(engine)):
        drawn: list[int] = []
        for t in out.tokens[b].tolist():
            with torch.no_grad():
                cond = engine.model(torch.tensor([prompt + prefix + drawn]), head="image")[0, -1]
                uncond = engine.model(torch.tensor([prefix + drawn]), head="image")[0, -1]
            assert t - V == int(guided_logits(cond, uncond, 3.0).argmax())
            drawn.append(t)


def test_text_mode_stops_each_row_at_its_stop_token_and_is_the_forwards_arg_max(engine):
    greedy = Sampling(temperature=0, min_p=0)
    free = engine.generate_text(_prompts(engine), 6, greedy)
    eos = engine.tok.token_id("<|im_end|>")
    for b, prompt in enumerate(_prompts(engine)):  # cached greedy decoding = the arg-max of a full forward, each token
        seq = list(prompt)
        for t in free.tokens[b].tolist():
            with torch.no_grad():
                assert t == int(engine.model(torch.tensor([seq]), head="text")[0, -1].argmax())
            if t == eos:
                break
            seq.append(t)
    stop = int(free.tokens[0, 1])  # a token row 0 draws second: given as the stop, that row ends there
    out = engine.generate_text(_prompts(engine), 6, greedy, stop=stop)
    row = out.tokens[0].tolist()
    first = row.index(stop)
    assert first <= 1 and row[: first + 1] == free.tokens[0, : first + 1].tolist()
    assert all(t == stop for t in row[first:]) and bool((out.logprobs[0, first + 1 :] == 0).all())


def test_sampling_draws_the_filtered_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(20000, 4)
    gen = torch.Generator().manual_seed(0)
    ids, logp = sample(logits, Sampling(min_p=0.2), gen)  # 0.05 is removed: 0.5, 0.3, 0.15 renormalised
    freq = torch.bincount(ids, minlength=4).float() / len(ids)
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.3, 0.15, 0.0]) / 0.95, atol=0.012, rtol=0)
    torch.testing.assert_close(logp, torch.log(torch.tensor([0.5, 0.3, 0.15, 1.0]) / 0.95)[ids])


def test_filters():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = lambda s: torch.isfinite(filter_logits(logits, s))[0].tolist()  # noqa: E731
    assert kept(Sampling(min_p=0.2)) == [True, True, True, False]  # 0.05 < 0.2 * 0.5
    assert kept(Sampling(min_p=0, top_k=2)) == [True, True, False, False]
    assert kept(Sampling(min_p=0, top_p=0.79)) == [True, True, False, False]
    assert kept(Sampling(min_p=0, top_p=0.81)) == [True, True, True, False]
    dyadic = torch.log(torch.tensor([[0.5, 0.25, 0.125, 0.125]]))  # sums exact in float32
    assert torch.isfinite(filter_logits(dyadic, Sampling(min_p=0, top_p=0.75)))[0].tolist() == [True, True, False, False]
    hot = filter_logits(logits, Sampling(temperature=2.0, min_p=0)).exp()  # temperature divides the logits
    torch.testing.assert_close(hot, (logits / 2).softmax(-1))
    logp = filter_logits(logits, Sampling(min_p=0, top_k=2))
    assert math.isclose(float(logp[0, 0].exp()), 0.5 / 0.8, rel_tol=1e-6)
    with pytest.raises(ValueError):
        Sampling(top_p=0)
    with pytest.raises(ValueError, match="at least one token"):
        left_pad([[1], []], 0)


@pytest.mark.parametrize("head", ["image", "text"])
def test_cpu_decode_step_equals_the_model_forward(engine, head):
    # the engine's CPU path (repacked weights, plain tensor ops) against the modules, vision-only blocks included
    model, V = engine.model, engine.vocab.text_vocab_size
    prompts = [engine.tok.encode("a red circle") + engine.tok.image_prefix(2, 2), engine.tok.encode("what")]
    ids, mask = left_pad(prompts, engine.pad_id)
    token = torch.tensor([V + 3, V + 5]) if head == "image" else torch.tensor(engine.tok.encode("red circle")[:2])
    position = mask.long().sum(-1)
    mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.bool)], 1)
    out = {}
    for fast in (True, False):
        cache = KVCache.allocate(model.config, 2, ids.shape[1] + 1)
        engine.prefill(ids, mask[:, :-1], cache, head)
        weights = DecodeWeights(model) if fast else None
        out[fast] = (engine.decode_one_token(token, position, mask, cache, head, weights), cache)
    torch.testing.assert_close(out[True][0], out[False][0], rtol=1e-5, atol=1e-5)
    for k_fast, k_ref in zip(out[True][1].k, out[False][1].k):
        torch.testing.assert_close(k_fast, k_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fast", [True, False])
def test_row_column_embeddings_reach_every_path_alike(engine, fast):
    """A model with image_grid_embed: the tokenizer reads each image token's cell off the prefix, the sampler's
    log-probs (cached decode, CPU fast path or the forward) equal GRPO's teacher-forced ones, and the embeddings
    change what is drawn (so every path really reads them)."""
    from xomni.stages.train_grpo import image_logprobs
    from xomni.stages.train_ar import with_grid_embed

    tok, V = engine.tok, engine.vocab.text_vocab_size
    ids = tok.encode("a") + tok.image_prefix(2, 3) + [V + 5] * 6 + [engine.vocab.eom_id] + tok.image_prefix(1, 2) + [V, V]
    cells = [c for c in tok.image_grid(ids) if c != (-1, -1)]
    assert cells == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (0, 0), (0, 1)]
    assert tok.image_grid(ids).count((-1, -1)) == len(ids) - 8

    torch.manual_seed(1)
    model = with_grid_embed(engine.model, 4)
    with pytest.raises(ValueError, match="grid"):
        with_grid_embed(model, 5)
    prompt = torch.tensor([_prompts(engine)[0] + tok.image_prefix(3, 4)])
    same = model(prompt, head="image", grid=torch.full((*prompt.shape, 2), -1))
    assert torch.equal(same, engine.model(prompt, head="image"))  # text tokens get no cell embedding
    scale = 0.3 * model.mm_embed.weight.norm(dim=-1).mean()  # init: rows on one half of the width, columns on the other
    assert torch.allclose(model.mm_row.weight.norm(dim=-1), scale.expand(4)) and not model.mm_row.weight[:, 16:].any()
    assert torch.allclose(model.mm_col.weight.norm(dim=-1), scale.expand(4)) and not model.mm_col.weight[:, :16].any()
    with torch.no_grad():
        model.mm_row.weight.normal_(0, 0.5), model.mm_col.weight.normal_(0, 0.5)
    grown = Engine(model, tok, fast=fast)
    out = grown.generate_image(_prompts(engine), rows=3, cols=4, generator=torch.Generator().manual_seed(0))
    ids, mask = left_pad([p + tok.image_prefix(3, 4) + row for p, row in zip(_prompts(engine), out.tokens.tolist())],
                         engine.pad_id)
    logp, _ = image_logprobs(model, ids, mask, 12, out.tokens - V, grown.grid(ids))
    assert torch.allclose(logp, out.logprobs, atol=1e-4)
    plain = engine.generate_image(_prompts(engine), rows=3, cols=4, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(plain.tokens, out.tokens)
    with pytest.raises(ValueError, match="grid"):
        model(ids, head="image")  # image tokens without their cells
    calls = []
    grown.decode_one_token = lambda *a, **k: calls.append(1)  # nothing may be sampled before the refusal
    with pytest.raises(ValueError, match="3 x 5 token image is beyond the model's 4 x 4"):
        grown.generate_image(_prompts(engine), rows=3, cols=5)
    assert calls == []


@pytest.mark.gpu
def test_the_engine_samples_on_the_models_device_with_a_cpu_generator(engine):
    import copy

    from xomni.stages.train_ar import with_grid_embed

    model = with_grid_embed(copy.deepcopy(engine.model), 4).cuda()
    gpu = Engine(model, engine.tok)
    out = gpu.generate_image(_prompts(engine), rows=3, cols=4, sampling=Sampling(cfg=2.0),
                             generator=torch.Generator().manual_seed(0))
    assert out.tokens.device.type == "cuda" and bool(gpu.vocab.is_image(out.tokens).all())
    text = gpu.generate_text(_prompts(engine), 5, generator=torch.Generator().manual_seed(0))
    assert text.tokens.shape[0] == 2 and not bool(gpu.vocab.is_image(text.tokens).any())


def test_the_engine_picks_its_decode_path_at_each_call(engine):
    import copy

    model = copy.deepcopy(engine.model)
    auto, pinned = Engine(model, engine.tok), Engine(model, engine.tok, fast=True)
    assert auto.fast and pinned.fast
    model.double()  # cast after the engine was built: the fast path's float32 tables no longer fit
    assert not auto.fast and pinned.fast
    out = auto.generate_image(_prompts(engine), rows=2, cols=2, generator=torch.Generator().manual_seed(0))
    assert out.tokens.shape == (2, 4) and bool(auto.vocab.is_image(out.tokens).all())
