"""Text tokenizer and the one definition of X-Omni's joint vocabulary.

The joint vocabulary is the text tokenizer's vocabulary (its added special tokens included) followed by the image
codebook: image code k has id `text_vocab_size + k`, as in the official model. X-Omni's own special tokens mark an
image in a sequence: `<SOM>{rows} {cols}<IMAGE>` + rows*cols image ids (row-major) + `<EOM>`.

Tiny preset: a byte-level BPE trained in-process with `tokenizers` on the world's text (English and Chinese).
Paper preset: Qwen2.5's `tokenizer.json` from a local path. Both are a `tokenizers.Tokenizer`; the code path is one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SOM, EOM, IMAGE = "<SOM>", "<EOM>", "<IMAGE>"
PAD, EOS = "<|endoftext|>", "<|im_end|>"
IM_START = "<|im_start|>"
SPECIAL_TOKENS = (PAD, IM_START, EOS, SOM, EOM, IMAGE)


@dataclass(frozen=True)
class JointVocab:
    """Where every kind of token lives in the joint id space."""

    text_vocab_size: int
    codebook_size: int
    pad_id: int
    eos_id: int
    im_start_id: int
    som_id: int
    eom_id: int
    image_id: int  # the `<IMAGE>` marker that closes the image prefix (not an image code)

    @property
    def size(self) -> int:
        return self.text_vocab_size + self.codebook_size

    def image_token(self, code):
        """Codebook index -> joint id (works on ints and tensors)."""
        return code + self.text_vocab_size

    def image_code(self, token):
        """Joint id -> codebook index."""
        return token - self.text_vocab_size

    def is_image(self, token):
        return token >= self.text_vocab_size


class TextTokenizer:
    """A `tokenizers.Tokenizer` that is guaranteed to carry X-Omni's special tokens."""

    def __init__(self, tokenizer: Tokenizer):
        missing = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
        if missing:
            tokenizer.add_special_tokens(missing)
        self.tokenizer = tokenizer

    @classmethod
    def from_file(cls, path: str | Path) -> "TextTokenizer":
        """Load a `tokenizer.json` (Qwen2.5's at paper scale, or a saved tiny one)."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer.json at {path}")
        return cls(Tokenizer.from_file(str(path)))

    @classmethod
    def train_bpe(cls, texts: Iterable[str], vocab_size: int) -> "TextTokenizer":
        """Byte-level BPE over `texts`, every byte in the alphabet so any string encodes."""
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    def save(self, path: str | Path) -> None:
        self.tokenizer.save(str(path))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def token_id(self, token: str) -> int:
        idx = self.tokenizer.token_to_id(token)
        if idx is None:
            raise KeyError(f"token {token!r} is not in the vocabulary")
        return idx

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def joint_vocab(self, codebook_size: int) -> JointVocab:
        return JointVocab(
            text_vocab_size=self.vocab_size,
            codebook_size=codebook_size,
            pad_id=self.token_id(PAD),
            eos_id=self.token_id(EOS),
            im_start_id=self.token_id(IM_START),
            som_id=self.token_id(SOM),
            eom_id=self.token_id(EOM),
            image_id=self.token_id(IMAGE),
        )

    def image_prefix(self, rows: int, cols: int) -> list[int]:
        """`<SOM>{rows} {cols}<IMAGE>` as ids: what precedes the rows*cols image tokens."""
        if rows <= 0 or cols <= 0:
            raise ValueError(f"image grid must be positive, got {rows}x{cols}")
        return [self.token_id(SOM)] + self.encode(f"{rows} {cols}") + [self.token_id(IMAGE)]

    def image_sequence(self, codes: list[int], rows: int, cols: int, vocab: JointVocab) -> list[int]:
        """The full image span: prefix + row-major image ids + `<EOM>`."""
        if len(codes) != rows * cols:
            raise ValueError(f"{len(codes)} codes do not fill a {rows}x{cols} grid")
        return self.image_prefix(rows, cols) + [vocab.image_token(c) for c in codes] + [vocab.eom_id]
