import pytest

from xomni.tokenizer.text import EOM, IMAGE, SOM, TextTokenizer


@pytest.fixture(scope="module")
def tok():
    return TextTokenizer.train_bpe(["A red circle left of a blue square.", "标牌上写着“你好世界”。", "4 8 12 16"] * 20, 400)


def test_joint_vocab_puts_image_code_k_after_the_text_vocab(tok):
    v = tok.joint_vocab(codebook_size=64)
    assert v.text_vocab_size == tok.vocab_size
    assert v.image_token(0) == tok.vocab_size and v.image_token(63) == tok.vocab_size + 63
    assert v.size == tok.vocab_size + 64
    assert v.image_code(v.image_token(5)) == 5
    assert v.is_image(v.image_token(0)) and not v.is_image(tok.vocab_size - 1)
    assert len({v.pad_id, v.eos_id, v.som_id, v.eom_id, v.image_id, v.im_start_id}) == 6
    assert max(v.pad_id, v.eos_id, v.som_id, v.eom_id, v.image_id) < v.text_vocab_size


def test_round_trip_english_and_chinese(tok):
    for text in ["a yellow star above two green crosses", "标牌上写着“世界”", "zebra 斑马 42"]:
        assert tok.decode(tok.encode(text)) == text


def test_image_sequence_layout(tok):
    v = tok.joint_vocab(codebook_size=16)
    seq = tok.image_sequence(list(range(6)), 2, 3, v)
    assert seq[0] == tok.token_id(SOM) and seq[-1] == tok.token_id(EOM)
    prefix = tok.image_prefix(2, 3)
    assert tok.decode(prefix) == f"{SOM}2 3{IMAGE}"
    assert seq[len(prefix):-1] == [v.image_token(k) for k in range(6)]
    with pytest.raises(ValueError):
        tok.image_sequence([1, 2], 2, 3, v)
    with pytest.raises(ValueError):
        tok.image_prefix(0, 3)


def test_save_and_load_keep_ids(tok, tmp_path):
    tok.save(tmp_path / "tokenizer.json")
    again = TextTokenizer.from_file(tmp_path)
    assert again.encode("red circle 你好") == tok.encode("red circle 你好")
    assert again.joint_vocab(8) == tok.joint_vocab(8)
    with pytest.raises(FileNotFoundError):
        TextTokenizer.from_file(tmp_path / "missing.json")


def pieces(t, text):
    return [t.tokenizer.id_to_token(i) for i in t.encode(text)]


def test_spelled_quotes_cut_quoted_text_into_characters_and_nothing_else(tok):
    spelled = tok.with_spelled_quotes()
    assert not tok.spells_quoted and spelled.spells_quoted and spelled.with_spelled_quotes() is spelled
    text = 'A red circle says "red circle". A blue square.'
    assert pieces(tok, text)[10:14] == ["re", "d", "Ġcircle", '"']  # BPE merges inside the quotes
    before, after = pieces(tok, text), pieces(spelled, text)
    assert after[:10] == before[:10] and after[-7:] == before[-7:]  # the same cuts outside the quotes
    assert after[10:20] == ["r", "e", "d", "Ġ", "c", "i", "r", "c", "l", "e"]
    # Chinese quotes: one piece per character (a character missing from this small vocabulary stays in bytes)
    zh = pieces(spelled, "标牌上写着“你好世界”。")
    assert zh[:2] == pieces(tok, "标牌上写着“") and zh[-1] == pieces(tok, "”。")[0]
    assert [spelled.decode(spelled.encode(c)) for c in "你好世界"] == list("你好世界")
    assert zh[2:-1] == [p for c in "你好世界" for p in pieces(spelled, c)]
    assert len(zh) - 3 > len(pieces(tok, "标牌上写着“你好世界”。")) - 3  # 你好世界 was one merged piece
    for s in [text, "标牌上写着“你好世界”。", 'two "a" and "b c"', 'an open " quote']:
        assert spelled.decode(spelled.encode(s)) == s
    assert spelled.joint_vocab(8) == tok.joint_vocab(8)  # the same ids: only the cuts changed


def test_spelled_quotes_survive_save_and_training(tok, tmp_path):
    tok.with_spelled_quotes().save(tmp_path / "tokenizer.json")
    assert TextTokenizer.from_file(tmp_path).spells_quoted
    trained = TextTokenizer.train_bpe(['a sign says "lemon" lemon'] * 20, 300, spell_quoted=True)
    assert pieces(trained, 'says "lemon" lemon')[-7:] == ["l", "e", "m", "o", "n", '"', "Ġlemon"]
