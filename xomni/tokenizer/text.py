"""Text tokenizer and the one definition of X-Omni's joint vocabulary.

The joint vocabulary is the text tokenizer's vocabulary (its added special tokens included) followed by the image
codebook: image code k has id `text_vocab_size + k`, as in the official model. X-Omni's own special tokens mark an
image in a sequence: `<SOM>{rows} {cols}<IMAGE>` + rows*cols image ids (row-major) + `<EOM>`.

Tiny preset: a byte-level BPE trained in-process with `tokenizers` on the world's text (English and Chinese).
Paper preset: Qwen2.5's `tokenizer.json` from a local path. Both are a `tokenizers.Tokenizer`; the code path is one.

Deviation (tiny, `spell_quoted`): text in quotes ("..." or “...”), the text a prompt asks to render, is split into
single characters before BPE, so the prompt shows the model the letters it must draw. Qwen2.5 learned how its tokens
are spelled from its pretraining; the tiny LM has nothing that could teach it that a token it never saw rendered
spells "l-e-m-o-n", and the held-out suites ask for exactly such words (docs/unified.md, "Spelling the quoted
text"). The rule lives in the saved `tokenizer.json` (a `Split` pre-tokenizer), so every reader of the file applies it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

SOM, EOM, IMAGE = "<SOM>", "<EOM>", "<IMAGE>"
PAD, EOS = "<|endoftext|>", "<|im_end|>"
IM_START = "<|im_start|>"
SPECIAL_TOKENS = (PAD, IM_START, EOS, SOM, EOM, IMAGE)

# One character inside quotes: before an odd number of ASCII double quotes up to the end of the text, or before a
# closing Chinese quote with no opening one in between.
SPELL_QUOTED = r'[^"“”](?=[^"]*"(?:[^"]*"[^"]*")*[^"]*\z)|[^"“”](?=[^“”]*”)'


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


def _spelling(inner):
    """`inner` (the tokenizer's own pre-tokenizer) after isolating each quoted character."""
    split = pre_tokenizers.Split(Regex(SPELL_QUOTED), behavior="isolated")
    return pre_tokenizers.Sequence([split] + ([inner] if inner is not None else []))


class TextTokenizer:
    """A `tokenizers.Tokenizer` that is guaranteed to carry X-Omni's special tokens.

    `padded_to`: the text vocabulary of the model it serves, when its embedding has more rows than the tokenizer
    has tokens (Qwen2.5-7B: 152,064 rows, X-Omni's too). Image code k is id `vocab_size + k` with `vocab_size` the
    padded size, as in the official model; the rows between are ids no text encodes to."""

    def __init__(self, tokenizer: Tokenizer, padded_to: int | None = None):
        missing = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
        if missing:
            tokenizer.add_special_tokens(missing)
        self.tokenizer = tokenizer
        own = tokenizer.get_vocab_size(with_added_tokens=True)
        if padded_to is not None and padded_to < own:
            raise ValueError(f"a text vocabulary of {padded_to} cannot hold this tokenizer's {own} tokens")
        self.padded = padded_to if padded_to is not None and padded_to > own else None

    def padded_to(self, size: int) -> "TextTokenizer":
        """The same tokenizer serving a model with `size` text rows (>= its own vocabulary)."""
        return TextTokenizer(self.tokenizer, size)

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
    def train_bpe(cls, texts: Iterable[str], vocab_size: int, spell_quoted: bool = False) -> "TextTokenizer":
        """Byte-level BPE over `texts`, every byte in the alphabet so any string encodes; `spell_quoted` splits
        quoted text into characters (the module docstring), in training as after it."""
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        if spell_quoted:
            tok.pre_tokenizer = _spelling(tok.pre_tokenizer)
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
        """Write tokenizer.json whole or not at all (a temporary sibling renamed over `path`)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        self.tokenizer.save(str(tmp))
        tmp.replace(path)

    @property
    def spells_quoted(self) -> bool:
        pre = json.loads(self.tokenizer.to_str()).get("pre_tokenizer") or {}
        parts = pre.get("pretokenizers", [pre])
        return any(p.get("type") == "Split" and p.get("pattern") == {"Regex": SPELL_QUOTED} for p in parts)

    def with_spelled_quotes(self) -> "TextTokenizer":
        """The same vocabulary and merges, with quoted text split into characters before BPE (a tokenizer trained
        without the rule keeps its ids: only how quoted text is cut changes)."""
        if self.spells_quoted:
            return self
        tok = Tokenizer.from_str(self.tokenizer.to_str())
        tok.pre_tokenizer = _spelling(tok.pre_tokenizer)
        return TextTokenizer(tok, self.padded)

    @property
    def vocab_size(self) -> int:
        """The text vocabulary: the tokenizer's tokens, or the model's padded size (`padded_to`)."""
        return self.padded or self.tokenizer.get_vocab_size(with_added_tokens=True)

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

    def image_grid(self, ids: list[int]) -> list[tuple[int, int]]:
        """(row, column) of every image code in `ids`, (-1, -1) at every other token: each `<SOM>{rows} {cols}<IMAGE>`
        prefix is read, and the image ids after it fill its grid row-major (an image still being drawn: as far as it
        goes). What a model with row/column embeddings (`UnifiedConfig.image_grid_embed`) is given as `grid`."""
        som, marker, V = self.token_id(SOM), self.token_id(IMAGE), self.vocab_size
        out = [(-1, -1)] * len(ids)
        start, cols, k = None, 0, -1
        for t, i in enumerate(ids):
            if i == som:
                start = t
            elif i == marker and start is not None:
                size = self.decode(ids[start + 1 : t]).split()
                if len(size) != 2 or not all(x.isdigit() for x in size):
                    raise ValueError(f"image prefix {self.decode(ids[start : t + 1])!r} is not <SOM>rows cols<IMAGE>")
                cols, k, start = int(size[1]), 0, None
            elif i >= V and k >= 0:
                out[t] = divmod(k, cols)
                k += 1
            elif i < V:
                k = -1
        return out

    def image_sequence(self, codes: list[int], rows: int, cols: int, vocab: JointVocab) -> list[int]:
        """The full image span: prefix + row-major image ids + `<EOM>`."""
        if len(codes) != rows * cols:
            raise ValueError(f"{len(codes)} codes do not fill a {rows}x{cols} grid")
        return self.image_prefix(rows, cols) + [vocab.image_token(c) for c in codes] + [vocab.eom_id]
