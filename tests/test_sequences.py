"""Training sequences: what is supervised, and packing."""

import pytest
import torch

from xomni.data.sequences import IGNORE, Formatter, pack, pack_weights
from xomni.tokenizer.text import TextTokenizer


@pytest.fixture(scope="module")
def fmt():
    tok = TextTokenizer.train_bpe(["a red circle", "what color is the circle? red", "1 2 3 4"] * 10, 100)
    return Formatter(tok, codebook_size=16)


def test_generation_supervises_exactly_the_image_codes(fmt):
    s = fmt.generation("a red circle", list(range(6)), 2, 3)
    V = fmt.vocab.text_vocab_size
    supervised = [(t, lab) for t, lab in enumerate(s.labels) if lab != IGNORE]
    assert [lab for _, lab in supervised] == [V + k for k in range(6)]
    assert all(s.ids[t + 1] == lab for t, lab in supervised)  # position t predicts the next id
    assert s.ids[-2:] == [fmt.vocab.eom_id, fmt.vocab.eos_id]


def test_unconditional_generation_is_the_cfg_branch(fmt):
    """cond_drop's samples start with the image prefix alone, as the engine's unconditional branch does."""
    s = fmt.generation(None, list(range(6)), 2, 3)
    prefix = fmt.tok.image_prefix(2, 3)
    V = fmt.vocab.text_vocab_size
    assert s.ids[: len(prefix)] == prefix
    assert s.ids == fmt.image(list(range(6)), 2, 3) + [fmt.vocab.eos_id]
    assert [lab for lab in s.labels if lab != IGNORE] == [V + k for k in range(6)]


def test_understanding_supervises_exactly_the_answer_and_its_end(fmt):
    s = fmt.understanding([3, 1, 4, 1], 2, 2, "what color is the circle?", "red")
    supervised = [lab for lab in s.labels if lab != IGNORE]
    assert supervised == fmt.tok.encode("red") + [fmt.vocab.eos_id]
    assert not any(fmt.vocab.is_image(lab) for lab in supervised)


def test_conversation_supervises_each_answer_as_the_pipeline_lays_it_out(fmt):
    turns = [("what color is the circle?", "red"), ("how many circles are there?", "2")]
    s = fmt.conversation([3, 1, 4, 1], 2, 2, turns)
    eos = fmt.vocab.eos_id
    first = fmt.understanding_prompt([3, 1, 4, 1], 2, 2, turns[0][0]) + fmt.tok.encode("red") + [eos]
    second = fmt.tok.encode("\n") + fmt.question_turn(turns[1][0], open_turn=False)
    assert s.ids == first + second + fmt.tok.encode("2") + [eos]  # what Pipeline.ask builds for a follow-up
    supervised = [(t, lab) for t, lab in enumerate(s.labels) if lab != IGNORE]
    assert [lab for _, lab in supervised] == fmt.tok.encode("red") + [eos] + fmt.tok.encode("2") + [eos]
    assert all(s.ids[t + 1] == lab for t, lab in supervised)
    assert len(s.labels) == len(s.ids)


def test_bad_samples_are_refused(fmt):
    with pytest.raises(ValueError, match="fill"):
        fmt.generation("x", [1, 2, 3], 2, 2)
    with pytest.raises(ValueError, match="empty"):
        fmt.generation_prompt("  ")


def test_pack_keeps_samples_whole_and_apart(fmt):
    samples = [fmt.generation("a red circle", list(range(4)), 2, 2), fmt.understanding([1] * 4, 2, 2, "what", "red")]
    n = max(len(s.ids) for s in samples)
    ids, labels, segments, positions = pack(samples * 2, 2 * n + 3, fmt.vocab.pad_id)
    assert ids.shape[0] == 2 and set(segments[0].tolist()) == {0, 1, 2}
    first = (segments[0] == 1).nonzero()[:, 0]
    assert ids[0, first].tolist() == samples[0].ids and positions[0, first].tolist() == list(range(len(first)))
    assert bool((labels[segments == 0] == IGNORE).all())
    with pytest.raises(ValueError, match="does not fit"):
        pack(samples, 5, 0)
    assert torch.equal(pack(samples, 200, 0)[0][0, : len(samples[0].ids)], torch.tensor(samples[0].ids))


def test_cell_weights_sit_on_their_codes_targets_and_pack_as_the_samples_do(fmt):
    weighted = fmt.generation("a red circle", list(range(6)), 2, 3, cell_weights=[1, 8, 1, 1, 1, 2])
    V = fmt.vocab.text_vocab_size
    by_code = {lab - V: w for lab, w in zip(weighted.labels, weighted.weights) if lab != IGNORE}
    assert by_code == {0: 1, 1: 8, 2: 1, 3: 1, 4: 1, 5: 2}
    assert all(w == 1.0 for lab, w in zip(weighted.labels, weighted.weights) if lab == IGNORE)
    plain = fmt.understanding([1] * 4, 2, 2, "what", "red")
    samples = [plain, weighted, plain]
    ids, labels, segments, _ = pack(samples, len(plain.ids) + len(weighted.ids), fmt.vocab.pad_id)
    weights = pack_weights(samples, len(plain.ids) + len(weighted.ids))
    assert weights.shape == ids.shape
    assert sorted(weights[labels >= V].tolist()) == [1, 1, 1, 1, 2, 8]
    assert bool((weights[segments == 0] == 0).all()) and bool((weights[(segments > 0) & (labels < V)] == 1).all())
    with pytest.raises(ValueError, match="cell weights"):
        fmt.generation("a red circle", list(range(6)), 2, 3, cell_weights=[1.0] * 5)
