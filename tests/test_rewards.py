"""Rewards: each function on renders whose answer is known, and the weighted combination with failures counted."""

import math

import pytest
from PIL import Image, ImageDraw

from xomni.data.world import WorldConfig, make_scene, render
from xomni.eval.scene_judge import SceneJudge, SceneObject
from xomni.rewards import CLUTTER_PENALTY, Rollout, alignment, combine, ocr_accuracy, stray_ink, token_consistency


class Reads:
    name = "fixed"

    def __init__(self, text):
        self.text = text

    def read(self, image):
        if self.text is None:
            raise RuntimeError("judge crashed")
        return self.text


def _scene(with_text: bool):
    return next(s for i in range(100) if ((s := make_scene(WorldConfig(), "heldout", i)).text is not None) == with_text)


class _Finds:
    """A scene judge that finds the given (shape, colour, box) objects in any image."""

    def __init__(self, *objects):
        self.found = [SceneObject(shape, color, box, 1.0) for shape, color, box in objects]

    def objects(self, image):
        return self.found


def _half_sign(s):
    """`s` rendered with its one-line sign's characters at half the size, on the left half of the asked box."""
    import copy

    from xomni.data.world import _draw_text

    bare = copy.deepcopy(s)
    bare.text = None
    image = render(bare)
    t = copy.deepcopy(s.text)
    x0, y0, x1, y1 = t.box
    t.box = t.line_boxes[0] = (x0, y0, x0 + (x1 - x0) // 2, y1)
    _draw_text(ImageDraw.Draw(image), t, s.cell // 2)
    return image


def test_ocr_reward_averages_engines_and_marks_failures():
    s = _scene(True)
    r = [Rollout(s, render(s)), Rollout(_scene(False), render(_scene(False)))]
    out = ocr_accuracy(r, [Reads(s.text.text), Reads("")])
    assert out[0] == 0.5 and out[1] is None
    assert math.isnan(ocr_accuracy(r[:1], [Reads(None)])[0])
    assert math.isnan(ocr_accuracy(r[:1], [Reads(s.text.text), Reads(None)])[0])  # one engine of two: not a score


def test_strict_ocr_reward_charges_text_written_twice():
    from xomni.rewards.pool import RewardPool

    s = _scene(True)
    twice = f"{s.text.text} {s.text.text}"  # the asked text, then again
    r = [Rollout(s, render(s))]
    assert ocr_accuracy(r, [Reads(twice)]) == [1.0]  # LongText-Bench's rule: a second copy costs nothing
    assert ocr_accuracy(r, [Reads(twice)], rule="strict") == [0.5]
    assert ocr_accuracy(r, [Reads(s.text.text)], rule="strict") == [1.0]
    with pytest.raises(ValueError, match="OCR rule"):
        ocr_accuracy(r, [Reads(twice)], rule="f1")
    with pytest.raises(ValueError, match="OCR rule"):
        RewardPool(workers=0, ocr_rule="f1")


def test_alignment_is_one_on_the_render_and_lower_on_a_blank():
    s = next(s for i in range(200) if len((s := make_scene(WorldConfig(), "heldout", i)).groups) == 2
             and len(s.objects) <= 4 - len({o.shape for o in s.objects} & {"star", "cross", "diamond", "hexagon"}))
    judge = SceneJudge()
    assert alignment([Rollout(s, render(s))], judge) == [1.0]
    blank = render(s).copy()
    blank.paste((248, 248, 246), (0, 0, blank.width, blank.height))
    assert alignment([Rollout(s, blank)], judge) == [-CLUTTER_PENALTY]  # no objects: every question fails
    # a judge that finds every asked-for object and as many unasked-for ones: every yes/no question passes, and
    # half of what was drawn is clutter
    from xomni.eval.scene_judge import SceneObject

    asked = {o.shape for o in s.objects}
    extra = [SceneObject(shape, "green", (0, 0, 30, 30), 1.0) for shape in ("star", "cross", "diamond", "hexagon")
             if shape not in asked][: len(s.objects)]
    assert len(extra) == len(s.objects)  # (the scene is picked so that this holds)

    class Cluttered:
        def objects(self, image):
            return [SceneObject(o.shape, o.color, o.box, 1.0) for o in s.objects] + extra

    assert alignment([Rollout(s, render(s))], Cluttered()) == [1 - CLUTTER_PENALTY * 0.5]

    class OnlyClutter:
        def objects(self, image):
            return extra

    assert alignment([Rollout(s, render(s))], OnlyClutter()) == [-CLUTTER_PENALTY]  # as low as the blank


def test_stray_ink_is_the_ink_no_found_object_or_asked_text_explains():
    img = Image.new("RGB", (40, 20), (248, 248, 246))  # pale background: no ink at all
    assert stray_ink(img, []) == 0.0
    img.paste((20, 20, 20), (0, 0, 10, 10))  # 100 px of dark ink
    img.paste((220, 40, 40), (20, 0, 30, 10))  # 100 px of red
    assert stray_ink(img, []) == 1.0
    assert stray_ink(img, [(20, 0, 30, 10)], margin=0) == 0.5  # the red is an object the judge found
    assert stray_ink(img, [(20, 0, 30, 10)], [((255, 255, 255), (20, 20, 20))], margin=0) == 0.0  # asked text's ink
    img.paste((137, 137, 137), (0, 10, 10, 20))  # an antialiased blend of white plate and dark ink: kept too
    assert stray_ink(img, [(20, 0, 30, 10)], [((255, 255, 255), (20, 20, 20))], margin=0) == 0.0
    # a navy plate with white ink: the grey blend is near its edge colours, the black is not
    assert stray_ink(img, [(20, 0, 30, 10)], [((25, 40, 110), (255, 255, 255))], margin=0) == 1 / 3


def test_alignment_charges_ink_the_judge_cannot_name():
    import numpy as np

    from xomni.rewards import PALE

    s = _scene(False)
    judge = SceneJudge()
    assert alignment([Rollout(s, render(s))], judge) == [1.0]
    blank = Image.new("RGB", (s.width, s.height), (248, 248, 246))
    glyphs = blank.copy()  # glyph-like strokes over the whole canvas, no object among them
    for x in range(0, glyphs.width, 4):
        glyphs.paste((20, 20, 20), (x, 0, x + 2, glyphs.height))
    # nothing asked for is there: the blank and the strokes fail alike, below any image with an asked-for object
    assert alignment([Rollout(s, blank)], judge) == alignment([Rollout(s, glyphs)], judge) == [-CLUTTER_PENALTY]
    # the asked-for scene with strokes in a band no object's box (grown by the 2 px margin) reaches: every question
    # passes, and the strokes are the stray share of the ink
    free = [x for x in range(0, s.width - 6) if all(x + 6 < o.box[0] - 2 or x > o.box[2] + 2 for o in s.objects)]
    assert free
    smeared = render(s)
    smeared.paste((20, 20, 20), (free[0], 0, free[0] + 2, s.height))
    smeared.paste((20, 20, 20), (free[0] + 4, 0, free[0] + 6, s.height))
    ink = int((np.asarray(smeared).min(-1) < PALE).sum())
    expected = 1 - CLUTTER_PENALTY * 4 * s.height / ink
    assert alignment([Rollout(s, smeared)], judge) == [pytest.approx(expected)] and expected < 1


def test_token_consistency_and_combination():
    s = _scene(False)
    r = [Rollout(s, render(s), [1, 2, 3, 4], [1, 2, 0, 4]), Rollout(s, render(s), [1, 2], [])]
    cons = token_consistency(r)
    assert cons[0] == 0.75 and math.isnan(cons[1])
    rewards, stats = combine({"ocr": [None, 1.0], "consistency": cons}, {"ocr": 2.0, "consistency": 1.0})
    assert rewards[0] == 0.75 and math.isnan(rewards[1])  # ocr does not apply to 0; 1 has a failed component
    assert stats == {"failed": {"ocr": 0, "consistency": 1}, "excluded": 1}
    both, _ = combine({"ocr": [0.5], "consistency": [1.0]}, {"ocr": 3.0, "consistency": 1.0})
    assert both == [(3 * 0.5 + 1.0) / 4]


def test_model_judge_rewards_with_stand_in_judges_and_missing_weights(tmp_path):
    import pytest

    from xomni.errors import MissingPart
    from xomni.eval.suites import dpg_questions
    from xomni.rewards.judges import HPSv2Reward, UnifiedRewardScore, VLMAlignmentReward
    from xomni.rewards.pool import RewardPool

    class SaysYes:  # a VLM stand-in: answers every question "yes", rates everything "4"
        def answer(self, image, question):
            return "yes"

        def _ask(self, image, text, max_new_tokens):
            return "I would say 4."

    s = _scene(False)
    r = [Rollout(s, render(s), prompt="a scene")]
    assert dpg_questions(s) and VLMAlignmentReward(SaysYes())(r) == [1.0]
    assert UnifiedRewardScore(SaysYes())(r) == [0.75]
    from xomni.rewards.judges import read_rating

    replies = ("4", " 5.", "4 out of 5", "I would say 2.", "Rating: 4/5", "I would rate it a 4 out of 5.",
               "Score: 3 (on a 1-5 scale)", "On a scale of 1 to 5", "0", "")
    assert [read_rating(x) for x in replies] == [4, 5, 4, 2, 4, 4, 3, None, None, None]
    with pytest.raises(MissingPart, match="HPSv2"):
        HPSv2Reward(tmp_path / "nothing")
    with pytest.raises(MissingPart):
        RewardPool(workers=0, models={"hps": str(tmp_path / "nothing")})


def test_hpsv2_scores_the_cosine_of_clips_projected_embeddings():
    import torch
    from transformers import CLIPConfig, CLIPModel

    from xomni.rewards.judges import HPSv2Reward

    torch.manual_seed(0)
    clip = CLIPModel(CLIPConfig(text_config={"vocab_size": 50, "hidden_size": 16, "intermediate_size": 32,
                                             "num_hidden_layers": 1, "num_attention_heads": 2,
                                             "max_position_embeddings": 16},
                                vision_config={"image_size": 32, "patch_size": 16, "hidden_size": 16,
                                               "intermediate_size": 32, "num_hidden_layers": 1,
                                               "num_attention_heads": 2},
                                projection_dim=8)).eval()
    pixels, ids = torch.randn(1, 3, 32, 32), torch.tensor([[1, 5, 7, 2]])

    class Processor:  # what CLIPProcessor returns, without its tokenizer files
        def __call__(self, **kwargs):
            return type("Batch", (dict,), {"to": lambda self, device: self})(
                pixel_values=pixels, input_ids=ids, attention_mask=torch.ones_like(ids))

    judge = object.__new__(HPSv2Reward)
    judge.model, judge.processor = clip, Processor()
    s = _scene(False)
    got = judge([Rollout(s, render(s), prompt="a scene")])
    with torch.no_grad():
        out = clip(input_ids=ids, pixel_values=pixels)
    assert got[0] == pytest.approx(torch.cosine_similarity(out.image_embeds, out.text_embeds).item(), abs=1e-5)


def test_a_judge_whose_weights_do_not_load_stops_the_run_instead_of_failing_every_chunk(tmp_path):
    from xomni.rewards.pool import JudgeLoadError, RewardPool

    broken = tmp_path / "hps"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "clip"}')  # passes the folder check; no weights to load
    s = _scene(True)
    with pytest.raises(JudgeLoadError, match=f"hps judge did not load from {broken}"):
        RewardPool(workers=0, models={"hps": str(broken)})
    with RewardPool(workers=1, models={"hps": str(broken)}) as pool:  # in a worker: raised by gather, not NaN
        with pytest.raises(JudgeLoadError, match="could not build its judges: the hps judge did not load"):
            pool.gather([pool.submit([Rollout(s, render(s))])], timeout=120)


def test_a_chunk_judged_past_the_timeout_fails_and_the_workers_are_replaced():
    import math
    import multiprocessing
    import time

    from xomni.rewards.pool import RewardPool, _Done, gather

    class Hung:
        def get(self, timeout=None):
            raise multiprocessing.TimeoutError

    class Queued:  # behind the hung chunk: never waited for
        def ready(self):
            return False

        def get(self, timeout=None):
            raise AssertionError("waited for a chunk queued behind a hung one")

    ok = {"ocr": [1.0], "alignment": [0.5], "consistency": [1.0]}
    parts, failed, hung = gather([(1, _Done(ok)), (1, Hung()), (2, Queued())])
    assert hung and failed == 2 and parts["alignment"][0] == 0.5 and all(math.isnan(x) for x in parts["ocr"][1:])

    class Busy:  # on another worker, nearly done: with several workers it is waited for
        def ready(self):
            return False

        def get(self, timeout=None):
            return {"ocr": [1.0], "alignment": [0.5], "consistency": [1.0]}

    parts, failed, hung = gather([(1, Hung()), (1, Busy())], one_worker=False)
    assert hung and failed == 1 and parts["alignment"][1] == 0.5
    s = _scene(True)
    with RewardPool(workers=1, timeout=120) as pool:
        first = pool.pool
        slow = (1, pool.pool.apply_async(time.sleep, (30,)))  # a worker busy past the timeout
        parts, failed = pool.gather([slow], timeout=0.5)
        assert failed == 1 and math.isnan(parts["alignment"][0]) and pool.restarts == 1 and pool.pool is not first
        parts, failed = pool.gather([pool.submit([Rollout(s, render(s))])])  # the new worker judges at once
        assert failed == 0 and math.isfinite(parts["alignment"][0])
    with pytest.raises(ValueError, match="timeout must be positive"):
        RewardPool(workers=0, timeout=0)


def test_alignment_charges_a_wrong_attempt_no_more_than_leaving_it_out():
    s = next(s for i in range(200) if len((s := make_scene(WorldConfig(), "heldout", i)).objects) == 2
             and s.objects[0].shape != s.objects[1].shape)
    blank = Image.new("RGB", (s.width, s.height), (248, 248, 246))  # no ink: only the objects found count
    first, second = s.objects
    wrong = next(shape for shape in ("star", "cross", "diamond", "hexagon", "circle") if shape not in
                 (first.shape, second.shape))
    one = (first.shape, first.color, first.box)
    left_out = alignment([Rollout(s, blank)], _Finds(one))
    attempted = alignment([Rollout(s, blank)], _Finds(one, (wrong, second.color, second.box)))
    # the second object's questions fail either way; drawn wrong it is an attempt, not clutter
    assert attempted == left_out and -CLUTTER_PENALTY < left_out[0] < 1
    # a third object is more than the prompt asked for: one of three found is clutter
    extra = alignment([Rollout(s, blank)], _Finds(one, (wrong, second.color, second.box), (wrong, "green", (0, 0, 9, 9))))
    assert extra == [pytest.approx(left_out[0] - CLUTTER_PENALTY / 3)]


def test_a_relation_of_one_shape_named_without_colours_is_asked_of_any_two():
    """"a photo of a square below a square": nothing asked where the two squares stand, and two side by side scored
    1.0. Asked of any two of the shape now, in its own words (the VLM judge reads them)."""
    from xomni.data.world import prompt_aspects, prompts
    from xomni.rewards import prompt_questions

    s = next(s for i in range(20000) if (s := make_scene(WorldConfig(), "train", i)).relation is not None
             and s.text is None and s.groups[0].shape == s.groups[1].shape
             and prompt_aspects(s, prompts(s)["photo"]) == {"objects", "relation"})
    a, b = s.objects
    r = Rollout(s, Image.new("RGB", (s.width, s.height), (248, 248, 246)), prompt=prompts(s)["photo"])
    relation = prompt_questions(r)[-1]
    assert relation["text"] == f"Is one {a.shape} {s.relation} another?" and relation["check"]["a_color"] is None

    def finds(*boxes):  # squares of a colour the prompt never named
        return _Finds(*((a.shape, "green", box) for box in boxes))

    x0, y0, x1, y1 = a.box
    dx, dy = (0, 60) if s.relation in ("left of", "right of") else (60, 0)  # beside when above/below was asked
    beside = (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
    assert alignment([r], finds(a.box, b.box)) == [1.0]  # "a square below a square", colours as they come
    assert alignment([r], finds(b.box, a.box)) == [1.0]
    assert alignment([r], finds(a.box, beside)) == [pytest.approx(2 / 3)]  # the shape and the count, not the relation
    assert alignment([r], finds(a.box)) == [pytest.approx(1 / 3 - CLUTTER_PENALTY / 2)]  # one square of two


def test_alignment_charges_an_object_too_few_as_one_too_many():
    """Three crosses asked: two found and four found each fail the count, and each is charged its share (one of the
    three asked missing, one of the four found extra); charged only for the extra, two was the safer side."""
    from xomni.data.world import prompts

    s = next(s for i in range(500) if (s := make_scene(WorldConfig(), "heldout", i)).text is None
             and len(s.groups) == 1 and s.groups[0].count == 3)
    g, blank = s.groups[0], Image.new("RGB", (s.width, s.height), (248, 248, 246))  # no ink: no stray ink

    def finds(n):
        return _Finds(*((g.shape, g.color, (20 * k, 0, 20 * k + 9, 9)) for k in range(n)))

    dense = prompts(s)["dense"]  # "is there a cross?", "are the crosses green?", "are there 3 green crosses?"
    assert alignment([Rollout(s, blank, prompt=dense)], finds(3)) == [1.0]
    assert alignment([Rollout(s, blank, prompt=dense)], finds(2)) == [pytest.approx(2 / 3 - CLUTTER_PENALTY / 3)]
    assert alignment([Rollout(s, blank, prompt=dense)], finds(4)) == [pytest.approx(2 / 3 - CLUTTER_PENALTY / 4)]


def test_alignment_allows_badly_written_text_the_area_of_its_plate():
    judge = SceneJudge()
    s = next(s for i in range(300) if (s := make_scene(WorldConfig(), "heldout", i)).text is not None
             and s.objects and alignment([Rollout(s, render(s))], judge) == [1.0])
    x0, y0, x1, y1 = s.text.box
    scrawl = render(s)
    scrawl.paste((200, 90, 10), (x0, y0, x1, y1))  # the plate's area in a colour of neither plate nor ink
    assert alignment([Rollout(s, scrawl)], judge) == [1.0]  # not stray: the OCR reward judges the text
    scrawl.paste((200, 90, 10), (x0, y1, x1, min(s.height, y1 + (y1 - y0))))  # as much again beside it is stray
    assert alignment([Rollout(s, scrawl)], judge)[0] < 1.0


def test_reward_judge_never_reads_a_plate_as_an_object():
    from xomni.rewards import reward_judge

    # a yellow plate as the decoder shifts it: 42 from the yellow objects' colour, 32 from the plate's
    image = Image.new("RGB", (64, 64), (248, 248, 246))
    image.paste((245, 215, 60), (16, 16, 48, 48))
    assert [(o.shape, o.color) for o in SceneJudge().objects(image)] == [("square", "yellow")]
    assert reward_judge().objects(image) == []
    image.paste((235, 205, 20), (16, 16, 48, 48))  # the object colour itself is still an object
    assert [(o.shape, o.color) for o in reward_judge().objects(image)] == [("square", "yellow")]


def test_alignment_scores_a_sign_with_the_wrong_text_above_no_sign():
    import copy

    from xomni.data.world import CHARS_ZH
    from xomni.eval.suites import dpg_questions
    from xomni.rewards import reward_judge, sign_drawn

    judge = reward_judge()
    s = next(s for i in range(2000) if (s := make_scene(WorldConfig(), "heldout", i)).text is not None
             and s.text.lang == "zh" and s.text.plate in ("yellow", "dark green") and s.objects
             and alignment([Rollout(s, render(s))], judge) == [1.0])
    wrong, no_sign = copy.deepcopy(s), copy.deepcopy(s)
    wrong.text.lines = ["".join(CHARS_ZH[(CHARS_ZH.index(c) + 1) % len(CHARS_ZH)] for c in line) for line in s.text.lines]
    no_sign.text = None
    assert sign_drawn(render(wrong), s) is True and sign_drawn(render(no_sign), s) is False
    n_objects = sum(q["check"]["kind"] != "text" for q in dpg_questions(s))
    # the OCR reward judges the text; alignment asks whether the sign is there (one question more than the objects')
    assert alignment([Rollout(s, render(wrong))], judge) == [1.0]
    assert alignment([Rollout(s, render(no_sign))], judge) == [pytest.approx(n_objects / (n_objects + 1))]
    white = copy.deepcopy(s)
    white.text.plate = "white"  # pale backgrounds match a white plate: no sign question
    assert sign_drawn(render(white), white) is None


def test_the_sign_question_scores_the_signs_size():
    """`sign_extent` is the plate's bounding box over the asked box, ink or not, and the sign question pays it: a
    blank plate has a full sign's extent, a sign drawn at half the asked width scores half on that question."""
    import copy

    from xomni.eval.suites import dpg_questions
    from xomni.rewards import reward_judge, sign_extent

    judge = reward_judge()
    s = next(s for i in range(2000) if (s := make_scene(WorldConfig(), "heldout", i)).text is not None
             and s.text.lang == "zh" and len(s.text.lines) == 1 and s.text.plate in ("yellow", "navy") and s.objects
             and alignment([Rollout(s, render(s))], judge) == [1.0])
    blank = copy.deepcopy(s)
    blank.text.lines = [" " * len(line) for line in s.text.lines]
    assert sign_extent(render(s), s) == sign_extent(render(blank), s) == 1.0
    image = _half_sign(s)
    assert sign_extent(image, s) == pytest.approx(0.5)
    n_objects = sum(q["check"]["kind"] != "text" for q in dpg_questions(s))
    assert alignment([Rollout(s, image)], judge) == [pytest.approx((n_objects + 0.5) / (n_objects + 1))]


def test_one_of_two_objects_of_one_shape_is_half_the_scene():
    """A relation between two triangles of two colours: drawing one of them scored 1.0 (their only question was "is
    there a triangle?") and GRPO learned to draw one object. Now it answers the shape and its own colour: 2 of 5; and
    to a prompt naming no colour, which asks for two triangles, the shape alone: 1 of 2; less, each time, half of
    the asked objects missing."""
    import copy

    from xomni.data.world import prompt_aspects, prompts
    from xomni.eval.suites import dpg_questions
    from xomni.rewards import reward_judge

    judge = reward_judge()
    s = next(s for i in range(5000) if (s := make_scene(WorldConfig(), "train", i)).relation is not None
             and s.text is None and s.groups[0].shape == s.groups[1].shape
             and prompt_aspects(s, prompts(s)["photo"]) == {"objects"}
             and alignment([Rollout(s, render(s), prompt=prompts(s)["dense"])], judge) == [1.0])
    one = copy.deepcopy(s)
    one.groups, one.objects, one.relation = one.groups[:1], one.objects[:1], None
    assert len(dpg_questions(s)) == 5
    assert alignment([Rollout(s, render(one), prompt=prompts(s)["dense"])], judge) == [pytest.approx(2 / 5 - CLUTTER_PENALTY / 2)]
    assert alignment([Rollout(s, render(one), prompt=prompts(s)["photo"])], judge) == [pytest.approx(1 / 2 - CLUTTER_PENALTY / 2)]
    assert alignment([Rollout(s, render(s), prompt=prompts(s)["photo"])], judge) == [1.0]


def test_the_reward_asks_only_what_the_prompt_says():
    """A short prompt with text names the text alone: no object question, no clutter, and a sign of any colour is
    the sign; a medium one names the objects and not the plate; a photo prompt without colours counts objects of
    any colour; the dense caption says everything (as a rollout without a prompt is judged)."""
    import copy

    from xomni.data.world import photo_flags, prompt_aspects, prompts
    from xomni.rewards import reward_judge, sign_drawn

    judge = reward_judge()
    s = next(s for i in range(2000) if (s := make_scene(WorldConfig(), "heldout", i)).text is not None
             and s.text.plate == "yellow" and s.objects and alignment([Rollout(s, render(s))], judge) == [1.0])
    levels = prompts(s)
    assert prompt_aspects(s, levels["short"]) == {"text"}
    relation = {"relation"} if s.relation else set()
    assert prompt_aspects(s, levels["medium"]) == {"objects", "colors", "text"} | relation
    assert prompt_aspects(s, levels["dense"]) == prompt_aspects(s, "") == prompt_aspects(s, "not one of its prompts")
    assert "plate" in prompt_aspects(s, levels["dense"]) and "text" not in prompt_aspects(s, levels["photo"])

    bare = copy.deepcopy(s)  # the sign alone, none of the objects
    bare.objects, bare.groups, bare.relation = [], [], None
    navy = copy.deepcopy(s)  # the asked objects, the sign on another coloured plate
    navy.text.plate = "navy"
    short, medium, dense = (levels[k] for k in ("short", "medium", "dense"))
    assert alignment([Rollout(s, render(bare), prompt=short)], judge) == [1.0]  # nothing else was asked
    assert alignment([Rollout(s, render(bare), prompt=dense)], judge) == [-CLUTTER_PENALTY]
    assert sign_drawn(render(navy), s) is False and sign_drawn(render(navy), s, plate_named=False) is True
    assert alignment([Rollout(s, render(navy), prompt=medium)], judge) == [1.0]
    assert alignment([Rollout(s, render(navy), prompt=dense)], judge) < [1.0]
    no_sign = copy.deepcopy(bare)
    no_sign.text = None  # nothing drawn that the short prompt asked about: its sign question says no
    assert alignment([Rollout(s, render(no_sign), prompt=short)], judge) == [0.0]
    assert ocr_accuracy([Rollout(s, render(s), prompt=levels["photo"])], [Reads(s.text.text)]) == [None]

    # "a photo of three hexagons": three hexagons of another colour pass; the caption, which names it, does not
    c = next(c for i in range(3000) if not (c := make_scene(WorldConfig(), "heldout", i)).text and not c.relation
             and len(c.groups) == 1 and c.groups[0].count > 1 and not photo_flags(c)[0]
             and alignment([Rollout(c, render(c))], judge) == [1.0])
    recoloured = copy.deepcopy(c)
    other = next(k for k in ("red", "blue", "green", "purple") if k != c.groups[0].color)
    for o in recoloured.objects:
        o.color = other
    recoloured.groups[0].color = other
    assert prompt_aspects(c, prompts(c)["photo"]) == {"objects"}
    assert alignment([Rollout(c, render(recoloured), prompt=prompts(c)["photo"])], judge) == [1.0]
    assert alignment([Rollout(c, render(recoloured), prompt=prompts(c)["dense"])], judge)[0] < 1.0


def test_torch_threads_are_lowered_only_while_a_worker_still_judges():
    import torch

    from xomni.rewards.pool import RewardPool, _Done
    from xomni.stages.train_grpo import beside_judges

    class Busy:
        def ready(self):
            return False

    pool = RewardPool.__new__(RewardPool)  # the thread rule needs only the worker count, not running workers
    pool.workers = 1
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        for pending in ([(2, Busy()), (2, _Done({}))], [(2, _Done({})), (2, _Done({}))]):
            with beside_judges(pool, pending):
                seen.append(torch.get_num_threads())
            assert torch.get_num_threads() == 2  # restored after the block
        assert seen == [1, 2]  # one chunk still judged: lowered; all judged: not
    finally:
        torch.set_num_threads(threads)


def test_whether_the_sign_is_asked_is_the_prompts_not_the_images():
    """A medium prompt (the plate's colour unnamed) on a scene with a coloured plate asks "is there a sign?" of every
    rollout: a half-size sign scores above none (with the question dropped when no coloured plate was drawn, none
    scored above half). A canvas striped with plate colour is not a free sign: plate colour beyond one sign's area is
    stray ink. And a judge that fails on one image fails that rollout alone."""
    import copy

    from xomni.data.world import prompts
    from xomni.rewards import reward_judge, sign_asked

    judge = reward_judge()
    s = next(s for i in range(2000) if (s := make_scene(WorldConfig(), "heldout", i)).text is not None
             and len(s.text.lines) == 1 and s.text.plate in ("yellow", "navy") and s.objects
             and alignment([Rollout(s, render(s))], judge) == [1.0])
    medium = prompts(s)["medium"]
    no_sign = copy.deepcopy(s)
    no_sign.text = None
    half = _half_sign(s)
    got = alignment([Rollout(s, im, prompt=medium) for im in (render(s), half, render(no_sign))], judge)
    assert got[0] == 1.0 and got[0] > got[1] > got[2]
    white = copy.deepcopy(s)
    white.text.plate = "white"
    assert sign_asked(s, {"text"}) and not sign_asked(white, {"text"}) and not sign_asked(s, {"objects"})

    class FailsOnce:
        def __init__(self):
            self.calls = 0

        def objects(self, image):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("judge crashed")
            return judge.objects(image)

    first, second = alignment([Rollout(s, render(s)), Rollout(s, render(s))], FailsOnce())
    assert math.isnan(first) and second == 1.0


def test_the_vlm_judge_asks_what_the_prompt_says_and_a_pool_needs_an_ocr_engine():
    from xomni.data.world import prompts
    from xomni.rewards.judges import VLMAlignmentReward
    from xomni.rewards.pool import RewardPool

    class Says:
        def __init__(self):
            self.asked = []

        def answer(self, image, question):
            self.asked.append(question)
            return "yes"

    s = next(s for i in range(500) if (s := make_scene(WorldConfig(), "heldout", i)).text is not None and s.objects)
    vlm = Says()
    assert VLMAlignmentReward(vlm)([Rollout(s, render(s), prompt=prompts(s)["short"])]) == [1.0]
    assert vlm.asked == [f'Does the {s.text.category} say "{s.text.text}"?']  # the short prompt names no object
    with pytest.raises(ValueError, match="at least one OCR engine"):
        RewardPool(ocr=(), workers=0)
