"""Batches of world scenes as tensors: pixels, per-cell labels, and understanding text."""

from __future__ import annotations

import random

import numpy as np
import torch

from xomni.data.world import Question, Scene, WorldConfig, caption, cell_labels, make_scene, questions, render

CAPTION_QUESTION = "Describe the image."


def pixels_of(images) -> torch.Tensor:
    """PIL RGB images of one size -> (B, 3, H, W) float in [0, 1]."""
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])  # B H W 3
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255)


def scene_batch(cfg: WorldConfig, split: str, indices) -> tuple[list[Scene], torch.Tensor]:
    scenes = [make_scene(cfg, split, int(i)) for i in indices]
    return scenes, pixels_of([render(s) for s in scenes])


def label_batch(scenes: list[Scene]) -> dict[str, torch.Tensor]:
    """Per-cell semantic labels, each (B, h, w) long; "silhouette" (B, h, w, SILHOUETTE**2) float."""
    labels = [cell_labels(s) for s in scenes]
    return {k: torch.from_numpy(np.stack([lab[k] for lab in labels])) for k in labels[0]}


def answer_text(q: Question, quote_text: bool) -> str:
    """A question's answer as the model writes it: with `quote_text`, what a sign says is put in double quotes, so
    that a tokenizer that spells quoted text (`TextTokenizer.with_spelled_quotes`) spells it. The suites' judge drops
    the quotes (`normalize_answer`)."""
    return f'"{q.answer}"' if quote_text and q.kind == "text" else q.answer


def understanding_pairs(scene: Scene, rng: random.Random, k: int, caption_prob: float = 0.25,
                        quote_text: bool = False) -> list[tuple[str, str]]:
    """Up to k (question, answer) turns about one scene, for one sequence: its dense caption first with
    `caption_prob`, then distinct questions (text answers quoted with `quote_text`: `answer_text`). Several turns
    per image give the LM k times the supervision for one pass of the encoder."""
    pairs = [(CAPTION_QUESTION, caption(scene))] if rng.random() < caption_prob else []
    qs = questions(scene, rng)
    pairs += [(q.question, answer_text(q, quote_text)) for q in rng.sample(qs, min(len(qs), k - len(pairs)))]
    return pairs
