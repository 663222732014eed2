"""Training sequences for the unified model: generation and understanding samples, their labels, and packing.

Both kinds are one chat turn, with the image written as X-Omni writes it (`<SOM>{rows} {cols}<IMAGE>` + codes
row-major + `<EOM>`):

    generation:     <|im_start|>user\\n{prompt}<|im_end|>\\n<|im_start|>assistant\\n{image}<|im_end|>
    understanding:  <|im_start|>user\\n{image}{question}<|im_end|>\\n<|im_start|>assistant\\n{answer}<|im_end|>

Generation supervises only the image codes; understanding only the answer and its closing `<|im_end|>` (paper
Sec. 3.2). Labels are aligned with the inputs: `labels[t]` is the id position t must predict, -100 where nothing is
supervised. `pack` lays samples end to end in rows of fixed length; each sample keeps its own segment id and its
positions restart, so attention never crosses samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xomni.tokenizer.text import JointVocab, TextTokenizer

IGNORE = -100


@dataclass
class Sample:
    ids: list[int]
    labels: list[int]  # same length as ids
    weights: list[float] | None = None  # per target, same length (None: every target weighs 1)


class Formatter:
    def __init__(self, tok: TextTokenizer, codebook_size: int):
        self.tok = tok
        self.vocab: JointVocab = tok.joint_vocab(codebook_size)
        self._user = [self.vocab.im_start_id] + tok.encode("user\n")
        self._assistant = [self.vocab.eos_id] + tok.encode("\n") + [self.vocab.im_start_id] + tok.encode("assistant\n")

    def image(self, codes: list[int], rows: int, cols: int) -> list[int]:
        if len(codes) != rows * cols:
            raise ValueError(f"{len(codes)} codes do not fill a {rows}x{cols} grid")
        return self.tok.image_sequence(codes, rows, cols, self.vocab)

    def generation_prompt(self, prompt: str) -> list[int]:
        """What the engine is given to draw `prompt` (it appends the image prefix itself)."""
        if not prompt.strip():
            raise ValueError("the prompt is empty")
        return self._user + self.tok.encode(prompt) + self._assistant

    def image_turn(self, codes: list[int], rows: int, cols: int) -> list[int]:
        """A user turn holding an image, left open for the question."""
        return self._user + self.image(codes, rows, cols)

    def question_turn(self, question: str, open_turn: bool) -> list[int]:
        """The question (in the open user turn, or a new one) and the assistant's opening."""
        if not question.strip():
            raise ValueError("the question is empty")
        return ([] if open_turn else self._user) + self.tok.encode(question) + self._assistant

    def understanding_prompt(self, codes: list[int], rows: int, cols: int, question: str) -> list[int]:
        return self.image_turn(codes, rows, cols) + self.question_turn(question, open_turn=True)

    def generation(self, prompt: str | None, codes: list[int], rows: int, cols: int,
                   cell_weights: list[float] | None = None) -> Sample:
        """Prompt, then the image; only the image codes are supervised. prompt None: the unconditional sample, the
        image prefix alone before the codes, exactly the engine's unconditional branch under CFG. cell_weights
        (rows*cols, row-major): each code's weight in the loss (default 1)."""
        context = self.generation_prompt(prompt) if prompt is not None else []
        image = self.image(codes, rows, cols)
        ids = context + image + [self.vocab.eos_id]
        targets = [IGNORE] * len(ids)
        first = len(context) + len(self.tok.image_prefix(rows, cols))
        for t in range(first, first + rows * cols):  # position t - 1 predicts code t
            targets[t - 1] = ids[t]
        if cell_weights is None:
            return Sample(ids, targets)
        if len(cell_weights) != rows * cols:
            raise ValueError(f"{len(cell_weights)} cell weights for a {rows}x{cols} grid")
        weights = [1.0] * len(ids)
        weights[first - 1 : first - 1 + rows * cols] = [float(w) for w in cell_weights]
        return Sample(ids, targets, weights)

    def understanding(self, codes: list[int], rows: int, cols: int, question: str, answer: str) -> Sample:
        return self.conversation(codes, rows, cols, [(question, answer)])

    def conversation(self, codes: list[int], rows: int, cols: int, turns: list[tuple[str, str]]) -> Sample:
        """One image, then question/answer turns laid out as `Pipeline.ask` lays out a conversation; every answer
        and its <|im_end|> are supervised, nothing else. Several turns per image give the model more answers to
        learn from per image token it has to read."""
        if not turns:
            raise ValueError("a conversation needs at least one turn")
        ids = self.image_turn(codes, rows, cols)
        learn = [False] * len(ids)  # per token: is it an answer token the model must produce
        for i, (question, answer) in enumerate(turns):
            context = (self.tok.encode("\n") if i else []) + self.question_turn(question, open_turn=i == 0)
            reply = self.tok.encode(answer) + [self.vocab.eos_id]
            ids += context + reply
            learn += [False] * len(context) + [True] * len(reply)
        return Sample(ids, [nxt if y else IGNORE for nxt, y in zip(ids[1:], learn[1:])] + [IGNORE])


def _layout(samples: list[Sample], seq_len: int) -> list[list[Sample]]:
    """First fit, in order: the samples of each row."""
    rows: list[list[Sample]] = []
    used: list[int] = []
    for s in samples:
        if len(s.ids) > seq_len:
            raise ValueError(f"a sample of {len(s.ids)} tokens does not fit rows of {seq_len}")
        for r, n in enumerate(used):
            if n + len(s.ids) <= seq_len:
                rows[r].append(s)
                used[r] += len(s.ids)
                break
        else:
            rows.append([s])
            used.append(len(s.ids))
    return rows


def pack(samples: list[Sample], seq_len: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Samples in order, first fit into rows of seq_len -> ids, labels, segments (0 = padding, 1.. per sample) and
    positions (restarting per sample), each (N, seq_len)."""
    rows = _layout(samples, seq_len)
    ids = torch.full((len(rows), seq_len), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), seq_len), IGNORE, dtype=torch.long)
    segments = torch.zeros((len(rows), seq_len), dtype=torch.long)
    positions = torch.zeros((len(rows), seq_len), dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for k, s in enumerate(row, 1):
            n = len(s.ids)
            ids[r, at : at + n] = torch.tensor(s.ids)
            labels[r, at : at + n] = torch.tensor(s.labels)
            segments[r, at : at + n] = k
            positions[r, at : at + n] = torch.arange(n)
            at += n
    return ids, labels, segments, positions


def image_grids(tok: TextTokenizer, ids: torch.Tensor) -> torch.Tensor:
    """(B, L) ids -> (B, L, 2): each image token's (row, column) in its image, -1 elsewhere (`TextTokenizer.image_grid`
    row by row; a packed row's samples each end before the next begins, so one scan serves them all)."""
    return torch.tensor([tok.image_grid(row) for row in ids.tolist()], dtype=torch.long).view(*ids.shape, 2)


def pack_weights(samples: list[Sample], seq_len: int) -> torch.Tensor:
    """(N, seq_len) float: each target's weight in the loss, laid out exactly as `pack` lays out the same samples
    (1 where a sample has no weights, 0 on padding)."""
    rows = _layout(samples, seq_len)
    weights = torch.zeros((len(rows), seq_len))
    for r, row in enumerate(rows):
        at = 0
        for s in row:
            n = len(s.ids)
            weights[r, at : at + n] = torch.tensor(s.weights) if s.weights is not None else 1.0
            at += n
    return weights
