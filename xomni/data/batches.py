"""Batches of world scenes as tensors: pixels, per-cell labels, and understanding text."""

from __future__ import annotations

import random

import numpy as np
import torch

from xomni.data.world import Scene, WorldConfig, caption, cell_labels, make_scene, questions, render

CAPTION_QUESTION = "Describe the image."


def pixels_of(images) -> torch.Tensor:
    """PIL RGB images of one size -> (B, 3, H, W) float in [0, 1]."""
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])  # B H W 3
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255)


def scene_batch(cfg: WorldConfig, split: str, indices) -> tuple[list[Scene], torch.Tensor]:
    scenes = [make_scene(cfg, split, int(i)) for i in indices]
    return scenes, pixels_of([render(s) for s in scenes])


def label_batch(scenes: list[Scene]) -> dict[str, torch.Tensor]:
    """Per-cell semantic labels, each (B, h, w) long."""
    labels = [cell_labels(s) for s in scenes]
    return {k: torch.from_numpy(np.stack([lab[k] for lab in labels])) for k in labels[0]}


def understanding_pair(scene: Scene, rng: random.Random, caption_prob: float = 0.25) -> tuple[str, str]:
    """One (question, answer) about a scene: its dense caption or one of its questions."""
    if rng.random() < caption_prob:
        return CAPTION_QUESTION, caption(scene)
    q = rng.choice(questions(scene, rng))
    return q.question, q.answer
