"""The shipped tiny checkpoint (checkpoints/tiny), loaded as every command loads it: it must do what its meta.json
says it was measured to do, on a few held-out scenes. Small samples, so the bounds sit well below the measured
rates (docs/image_side.md, "Run 6"); a broken load (int8 scales dropped, a wrong key, another split's tokenizer)
fails them by far."""

import json

import pytest
import torch

from xomni.data.batches import scene_batch
from xomni.data.world import SPLIT_VERSION, WorldConfig, questions
from xomni.eval.reconstruction import object_colors
from xomni.pipeline import DEFAULT_CHECKPOINT, Pipeline, to_image

N = 12


@pytest.fixture(scope="module")
def pipe():
    return Pipeline.from_pretrained(DEFAULT_CHECKPOINT)


@pytest.fixture(scope="module")
def heldout():
    return scene_batch(WorldConfig(), "heldout", range(N))


def test_meta_names_the_split_and_the_command():
    for part in ("tokenizer", "decoder", "ar"):
        meta = json.loads((DEFAULT_CHECKPOINT / part / "meta.json").read_text())
        assert meta.get("rebuild_command", "").startswith("bash runs/cpu_tiny.sh"), part
    size = sum(f.stat().st_size for f in DEFAULT_CHECKPOINT.rglob("*") if f.is_file())
    assert size < 40e6  # the issues' cap for the three components together
    assert SPLIT_VERSION == "v3"  # the checkpoint was trained on split v3: a new split means a new checkpoint


def test_reconstructions_keep_object_colours(pipe, heldout):
    scenes, pixels = heldout
    codes = pipe.image.encode(pixels)
    images = [to_image(x) for x in pipe.image.decode(codes, steps=8, generator=torch.Generator().manual_seed(0))]
    pairs = [p for im, s in zip(images, scenes) for p in object_colors(im, s)]
    hits = sum(true == named for true, named in pairs)
    assert len(pairs) >= 10 and hits / len(pairs) >= 0.8, pairs  # measured: 0.99 of 428 objects


def test_the_ar_model_answers_colour_questions_from_the_image(pipe, heldout):
    import random

    scenes, pixels = heldout
    asked = right = 0
    for scene, x in zip(scenes, pixels):
        for q in questions(scene, random.Random(0)):
            if q.kind == "color":
                asked += 1
                right += pipe.understand(to_image(x), q.question, max_new_tokens=8).strip() == q.answer
    assert asked >= 6 and right / asked >= 0.6, (right, asked)


def test_generation_is_seeded_and_draws_image_tokens(pipe):
    images, codes = pipe.generate(["a photo of a red circle"] * 2, 128, 128, seed=1, decoder_steps=2)
    again, codes2 = pipe.generate(["a photo of a red circle"] * 2, 128, 128, seed=1, decoder_steps=2)
    assert torch.equal(codes, codes2) and codes.shape == (2, 8, 8)
    assert [im.size for im in images] == [(128, 128)] * 2


def test_reconstructed_signs_measure_their_full_size(pipe):
    """A reconstructed Chinese sign's characters cut its plate into pieces; `sign_extent` bridges them, so a sign
    drawn at the asked size measures the whole asked box (GRPO's sign question pays this)."""
    from xomni.data.batches import pixels_of
    from xomni.data.world import make_scene, render
    from xomni.rewards import sign_extent

    scenes = [s for i in range(300) if (s := make_scene(WorldConfig(), "heldout", i)).text is not None
              and s.text.lang == "zh" and s.text.plate != "white"][:8]
    pixels = pipe.image.decode(pipe.image.encode(pixels_of([render(s) for s in scenes])), steps=8,
                               generator=torch.Generator().manual_seed(0))
    extents = [sign_extent(to_image(x), s) for s, x in zip(scenes, pixels)]
    assert min(extents) >= 0.9, extents
