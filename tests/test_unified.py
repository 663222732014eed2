"""The unified AR model: Qwen2 parity, KV-cache exactness, vision-only blocks, padding."""

import pytest
import torch
from transformers import Qwen2ForCausalLM

from safetensors.torch import save_file

from xomni.model.unified import KVCache, UnifiedConfig, UnifiedModel, load_pretrained, load_pretrained_tensors, loss_on

CFG = UnifiedConfig(text_vocab_size=97, codebook_size=53, hidden_size=64, num_layers=2, num_vision_layers=1,
                    num_heads=4, num_kv_heads=2, intermediate_size=96, max_positions=128)


def _model(seed=0):
    torch.manual_seed(seed)
    return UnifiedModel(CFG).eval()


def _mixed_ids(B=2, T=20, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, CFG.text_vocab_size, (B, T), generator=g)
    ids[:, 5:14] = CFG.text_vocab_size + torch.randint(0, CFG.codebook_size, (B, 9), generator=g)  # an image span
    return ids


def test_text_logits_match_qwen2_for_causal_lm():
    model = _model()
    ref = Qwen2ForCausalLM(CFG.qwen2_config()).eval()
    ref.model.embed_tokens.load_state_dict(model.embed_tokens.state_dict())
    ref.model.layers.load_state_dict(model.layers.state_dict())
    ref.model.norm.load_state_dict(model.norm.state_dict())
    ref.lm_head.load_state_dict(model.lm_head.state_dict())
    ids = torch.randint(0, CFG.text_vocab_size, (2, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(ids)[..., : CFG.text_vocab_size]
        theirs = ref(ids).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_kv_cache_decode_matches_a_full_forward():
    model, ids = _model(), _mixed_ids()
    with torch.no_grad():
        full = model(ids)
        cache = KVCache.allocate(CFG, 2, 32)
        steps = [model(ids[:, :7], cache=cache)]
        for t in range(7, ids.shape[1]):
            steps.append(model(ids[:, t : t + 1], cache=cache))
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)
    assert cache.length == ids.shape[1]


def test_vision_blocks_change_image_positions_only_and_skipping_text_is_exact():
    model, ids = _model(), _mixed_ids()
    with torch.no_grad():
        for layer in model.vision_pre:  # make the vision block matter
            layer.mlp.down_proj.weight.mul_(50)
        fast, official = model(ids), model(ids, vision_on_all=True)
        torch.testing.assert_close(fast, official, rtol=1e-5, atol=1e-5)
        saved = model.vision_pre[0].mlp.down_proj.weight.clone()
        model.vision_pre[0].mlp.down_proj.weight.zero_()
        without = model(ids)
        model.vision_pre[0].mlp.down_proj.weight.copy_(saved)
        assert torch.equal(without[:, :5], fast[:, :5])  # the text before the image: untouched (causal)
        assert not torch.allclose(without[:, 5:14], fast[:, 5:14])  # the image positions: the block acts on them
        text_only = ids.clone()
        text_only[:, 5:14] = 3
        a = model(text_only)
        model.vision_pre[0].mlp.down_proj.weight.zero_()
        b = model(text_only)
    torch.testing.assert_close(a, b)  # with no image tokens the vision blocks are a no-op


def test_left_padding_with_positions_matches_unpadded():
    model, ids = _model(), _mixed_ids(B=1, T=16)
    pad = torch.cat([torch.zeros(1, 4, dtype=torch.long), ids], 1)
    mask = torch.cat([torch.zeros(1, 4, dtype=torch.bool), torch.ones(1, 16, dtype=torch.bool)], 1)
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        torch.testing.assert_close(model(pad, positions=positions, pad_mask=mask)[:, 4:], model(ids),
                                   rtol=1e-5, atol=1e-5)


def test_loss_supervises_only_labelled_positions():
    logits = torch.randn(1, 4, CFG.vocab_size)
    labels = torch.tensor([[-100, 5, -100, 120]])
    expected = (torch.nn.functional.cross_entropy(logits[0, 1:2], labels[0, 1:2])
                + torch.nn.functional.cross_entropy(logits[0, 3:4], labels[0, 3:4])) / 2
    torch.testing.assert_close(loss_on(logits, labels), expected)


def test_text_after_an_image_reads_it_and_its_loss_reaches_exactly_the_image_codes_embeddings():
    model = _model()
    ids = _mixed_ids(B=1)
    other = ids.clone()
    other[0, 7] = CFG.text_vocab_size + (int(ids[0, 7]) - CFG.text_vocab_size + 1) % CFG.codebook_size
    with torch.no_grad():
        a, b = model(ids, head="text"), model(other, head="text")
    assert torch.equal(a[0, :7], b[0, :7])  # causal: nothing before the changed code moves
    assert not torch.allclose(a[0, 14:], b[0, 14:])  # the text after the image does
    model.train()
    labels = torch.full_like(ids, -100)
    labels[0, 16] = 3  # one answer token after the image
    loss_on(model(ids), labels).backward()
    rows = model.mm_embed.weight.grad.abs().sum(-1) > 0
    assert torch.equal(rows.nonzero().flatten(), (ids[0, 5:14] - CFG.text_vocab_size).unique())


def test_image_codes_read_the_prompt_and_their_loss_reaches_exactly_the_prompts_embeddings():
    """The generation direction: image logits depend on the text before the image, and an image code's loss
    sends gradient to the prompt tokens' embeddings (and no others)."""
    model = _model()
    ids = _mixed_ids(B=1)  # text 0-4, image 5-13, text after
    other = ids.clone()
    other[0, 2] = (int(ids[0, 2]) + 1) % CFG.text_vocab_size
    with torch.no_grad():
        a, b = model(ids, head="image"), model(other, head="image")
    assert torch.equal(a[0, :2], b[0, :2]) and not torch.allclose(a[0, 4:13], b[0, 4:13])
    model.train()
    labels = torch.full_like(ids, -100)
    labels[0, 4] = ids[0, 5]  # the first image code, predicted from the prompt alone
    loss_on(model(ids), labels).backward()
    rows = model.embed_tokens.weight.grad.abs().sum(-1) > 0
    assert torch.equal(rows.nonzero().flatten(), ids[0, :5].unique())


def test_out_of_range_ids_and_overlong_sequences_are_refused():
    model = _model()
    with pytest.raises(ValueError, match="token ids"):
        model(torch.tensor([[CFG.vocab_size]]))
    with pytest.raises(ValueError, match="context"):
        model(torch.zeros(1, CFG.max_positions + 1, dtype=torch.long))


def test_packed_segments_equal_separate_forwards():
    model = _model()
    a, b = _mixed_ids(B=1, T=16, seed=2), _mixed_ids(B=1, T=16, seed=3)[:, :10]
    ids = torch.cat([a, b, torch.zeros(1, 6, dtype=torch.long)], 1)
    segments = torch.tensor([[1] * 16 + [2] * 10 + [0] * 6])
    positions = torch.tensor([list(range(16)) + list(range(10)) + [0] * 6])
    with torch.no_grad():
        packed = model(ids, positions=positions, segments=segments)
        torch.testing.assert_close(packed[:, :16], model(a), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(packed[:, 16:26], model(b), rtol=1e-5, atol=1e-5)


def test_qwen2_checkpoint_folder_loads_as_the_llm(tmp_path):
    torch.manual_seed(3)
    ref = Qwen2ForCausalLM(CFG.qwen2_config()).eval()
    ref.save_pretrained(tmp_path)  # a local folder of safetensors, as Qwen2.5 ships
    model = _model()
    untouched = load_pretrained(model, tmp_path, "qwen2")
    stored = {**ref.state_dict(), "model.layers.0.self_attn.rotary_emb.inv_freq": torch.ones(8)}
    assert load_pretrained_tensors(_model(), stored, "qwen2") == untouched
    assert untouched and all(k.startswith(("vision_pre.", "vision_post.", "mm_")) for k in untouched)
    ids = torch.randint(0, CFG.text_vocab_size, (2, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(ids, head="text"), ref(ids).logits, rtol=1e-5, atol=1e-5)


def test_official_xomni_names_map_onto_ours(tmp_path):
    # X-Omni's layout (its modeling_xomni.py): one `model.layers` list, vision-only blocks first and last,
    # lm_/mm_ embeddings and norms; mm_vocab_size may exceed the codebook
    ours = _model(seed=5).state_dict()
    nv, n = CFG.num_vision_layers, CFG.num_layers
    official = {"model.lm_embed_tokens.weight": ours["embed_tokens.weight"],
                "model.mm_embed_tokens.weight": torch.cat([ours["mm_embed.weight"], torch.zeros(3, 64)]),
                "model.lm_norm.weight": ours["norm.weight"], "model.mm_norm.weight": ours["mm_norm.weight"],
                "lm_head.weight": ours["lm_head.weight"],
                "mm_head.weight": torch.cat([ours["mm_head.weight"], torch.zeros(3, 64)]),
                "model.rotary_emb.inv_freq": torch.ones(8)}
    for k, v in ours.items():
        for prefix, offset in (("vision_pre.", 0), ("layers.", nv), ("vision_post.", nv + n)):
            if k.startswith(prefix):
                i, rest = k[len(prefix):].split(".", 1)
                official[f"model.layers.{int(i) + offset}.{rest}"] = v
    for i in (0, nv, nv + n):  # older checkpoints store RoPE's buffer per layer: skipped wherever it sits
        official[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
    save_file({k: v.contiguous() for k, v in official.items()}, str(tmp_path / "model.safetensors"))
    model = _model(seed=6)
    assert load_pretrained(model, tmp_path, "official") == []
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ours[k])
    one_more = {**official, f"model.layers.{2 * nv + n}.mlp.down_proj.weight": torch.zeros(64, 96)}  # a block too many
    with pytest.raises(ValueError, match="1 tensors it has no place for"):
        load_pretrained_tensors(_model(), one_more, "official")
    del official["model.mm_norm.weight"]
    save_file({k: v.contiguous() for k, v in official.items()}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="does not fit"):
        load_pretrained(_model(), tmp_path, "official")


@pytest.mark.parametrize("phase", ["text", "pretrain2"])
def test_every_parameter_a_phase_trains_gets_a_gradient_from_its_samples(phase):
    """DDP's reduction waits for every trainable parameter's gradient: a phase may train only what its samples
    reach (text: text-only sequences; pretrain2: text and image tokens)."""
    from xomni.stages.train_ar import trainable

    model = _model().train()
    params = trainable(model, phase)
    ids = _mixed_ids() if phase == "pretrain2" else torch.randint(0, CFG.text_vocab_size, (2, 20))
    model(ids, head="text" if phase == "text" else "joint").sum().backward()  # text: only the text head is read
    assert params and all(p.grad is not None for p in params)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert (frozen and all(n.startswith(("vision_", "mm_")) for n in frozen)) if phase == "text" else not frozen
