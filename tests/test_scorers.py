"""The benchmark scorers against the official definitions: worked examples and hand-built cases per rule."""

import math

import pytest
from PIL import Image

from xomni.eval import dpg, geneval, longtext, oneig

# ----------------------------------------------------------------------------------------------- LongText-Bench


def test_longtext_english_normalisation():
    assert longtext.normalize("  It's an E-mail,\n  CAFÉ déjà 你好! ", "en") == "its an email café déjà 你好"
    assert longtext.units("a  b", "en") == ["a", "b"]


def test_longtext_chinese_normalisation_keeps_case_and_drops_spaces():
    assert longtext.normalize("你 好，World 2025！", "zh") == "你好World2025"


def test_longtext_match_is_multiset_recall():
    m = longtext.match_text("the the cat", ["The cat", "the dog"], "en")  # gt: the cat the dog
    assert (m.matched, m.total, m.read) == (3, 4, 3)
    assert longtext.match_text("猫猫", "猫狗猫猫", "zh") == longtext.TextMatch(2, 4, 2)
    extra = longtext.match_text("dog cat extra words", "cat dog", "en")
    assert extra.accuracy == 1.0 and extra.strict == 0.5  # extra text costs nothing, except by our strict rule
    assert longtext.match_text("猫猫", "猫狗猫猫", "zh").strict == 0.5  # as accuracy when no more is read than asked


def test_longtext_keeps_the_official_clean_up_quirk():
    assert longtext.match_text("No text recognized.", "no text", "en").matched == 0
    # only the last keyword of the official loop takes effect: "addCriterion" stays, and so does the bare phrase
    assert longtext.match_text("addCriterion", "addcriterion", "en").matched == 1
    assert longtext.match_text("No text recognized", "no text", "en").matched == 2


def test_longtext_micro_average_weighs_long_targets_more():
    matches = [longtext.TextMatch(1, 1), longtext.TextMatch(0, 3)]
    assert longtext.text_accuracy(matches) == 0.25
    with pytest.raises(ValueError):
        longtext.match_text("x", "!!!", "en")
    with pytest.raises(ValueError, match="lang"):
        longtext.normalize("x", "fr")


# ----------------------------------------------------------------------------------------------- OneIG-Bench


def test_oneig_worked_example():
    assert oneig.text_score_formula(30, 0.1, 0.7, 100) == pytest.approx(0.919)


def test_oneig_pooled_score_from_tiles():
    tiles = [oneig.score_tile("Hello World", "['Hello World']"), oneig.score_tile("hello", "['Hello World']")]
    # tile 1 exact; tile 2: "hello" vs "Hello World": H->h and delete " World" = 7 edits, 0 of 2 words (case kept)
    assert [t.edit_distance for t in tiles] == [0, 7]
    out = oneig.text_score(tiles, "en")
    assert out["ED"] == 3.5 and out["CR"] == 0.5 and out["WAC"] == 0.5
    assert out["text_score"] == pytest.approx(1 - 3.5 * 0.5 * 0.5 / 100)


def test_oneig_normalises_the_raw_list_string_and_picks_mode_per_string():
    assert oneig.normalize("['The Impact', 'of 5G']") == "The Impact of 5G"
    assert oneig.normalize("['5G技术', '的影响']") == "5G技术的影响"
    assert oneig.normalize("no han here, ok") == "no han here ok"  # spaces kept: the string has no Han
    t = oneig.score_tile("技术 的", "['技术的影响']")  # Han in both: characters, spaces gone
    assert (t.matched, t.total, t.edit_distance) == (3, 5, 2)
    assert oneig.score_tile("No text recognized.addCriterion", "['ab']").edit_distance == 2


def test_oneig_levenshtein():
    assert oneig.levenshtein("kitten", "sitting") == 3
    assert oneig.levenshtein("", "abc") == 3 and oneig.levenshtein("abc", "abc") == 0


def test_oneig_grid_split_skips_exactly_black_tiles():
    grid = Image.new("RGB", (20, 10), (0, 0, 0))
    grid.paste(Image.new("RGB", (10, 10), (255, 255, 255)), (10, 0))
    assert len(oneig.split_grid(grid, 2, 1)) == 1
    grid.putpixel((0, 0), (1, 0, 0))  # one non-black pixel keeps the tile
    assert len(oneig.split_grid(grid, 2, 1)) == 2
    with pytest.raises(ValueError):
        oneig.text_score([], "en")


# ----------------------------------------------------------------------------------------------- GenEval


def test_geneval_position_examples():
    a = (0, 0, 100, 100)
    assert geneval.relative_position(a, (200, 0, 300, 100)) == {"left of"}
    assert geneval.relative_position(a, (150, 150, 250, 250)) == {"left of", "above"}
    assert geneval.relative_position((200, 0, 300, 100), a) == {"right of"}
    assert geneval.relative_position(a, (0, 200, 100, 300)) == {"above"}
    assert geneval.relative_position(a, (10, 0, 110, 100)) == set()  # within the 0.1 * (w_a + w_b) margin


D = geneval.Detection


def test_geneval_counting_uses_its_threshold_and_exclude():
    meta = {"tag": "counting", "include": [{"class": "cat", "count": 2}], "exclude": [{"class": "cat", "count": 3}]}
    two = {"cat": [D((0, 0, 10, 10), 0.95), D((20, 0, 30, 10), 0.92), D((40, 0, 50, 10), 0.5)]}
    assert geneval.evaluate_image(meta, two)[0]  # the 0.5 one is below the counting threshold 0.9
    three = {"cat": two["cat"][:2] + [D((40, 0, 50, 10), 0.91)]}
    ok, reasons = geneval.evaluate_image(meta, three)
    assert not ok and "cat<3" in reasons[0]
    assert not geneval.evaluate_image({**meta, "tag": "two_object"}, two)[0]  # 0.5 > 0.3 counts there


def test_geneval_color_and_position_clauses():
    meta = {"tag": "position", "include": [{"class": "dog", "count": 1}, {"class": "cat", "count": 1,
                                                                         "position": ["left of", 0]}]}
    assert geneval.evaluate_image(meta, {"dog": [D((200, 0, 300, 100), 0.9)], "cat": [D((0, 0, 100, 100), 0.9)]})[0]
    assert not geneval.evaluate_image(meta, {"dog": [D((0, 0, 100, 100), 0.9)], "cat": [D((200, 0, 300, 100), 0.9)]})[0]
    assert not geneval.evaluate_image(meta, {"cat": [D((0, 0, 100, 100), 0.9)]})[0]  # no target: fails
    color = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}]}
    assert geneval.evaluate_image(color, {"car": [D((0, 0, 9, 9), 0.8, "red"), D((0, 0, 9, 9), 0.5, "blue")]})[0]
    assert geneval.evaluate_image(color, {"car": [D((0, 0, 9, 9), 0.5, "blue"), D((0, 0, 9, 9), 0.8, "red")]})[0]
    assert not geneval.evaluate_image(color, {"car": [D((0, 0, 9, 9), 0.8, "blue"), D((0, 0, 9, 9), 0.5, "red")]})[0]


def test_geneval_keeps_at_most_16_per_class():
    many = {"cup": [D((i, 0, i + 1, 1), 0.5) for i in range(20)]}
    assert len(geneval.keep_detections(many, "single_object")["cup"]) == 16


def test_geneval_overall_is_the_mean_of_task_means():
    out = geneval.summarize([("counting", True), ("counting", False), ("colors", True)])
    assert out == {"counting": 0.5, "colors": 1.0, "overall": 0.75}


# ----------------------------------------------------------------------------------------------- DPG-Bench


Q = dpg.Question


def test_dpg_cascades_zeroes_down_dependency_chains():
    qs = [Q(1, "is there a cat?", (), "entity - whole"), Q(2, "is the cat black?", (1,), "attribute - color"),
          Q(3, "is the black cat sleeping?", (2,), "attribute - state"), Q(4, "is it night?", (), "global - ")]
    answers = {1: "no", 2: "yes", 3: "yes", 4: "yes"}
    assert dpg.cascade(qs, dpg.raw_scores(qs, answers)) == {1: 0, 2: 0, 3: 0, 4: 1}
    assert dpg.image_score(qs, [answers, {1: "yes", 2: "yes", 3: "Yes", 4: "yes"}]) == pytest.approx((0.25 + 0.75) / 2)


def test_dpg_summary_categories_use_raw_answers_of_the_last_tile():
    qs = [Q(1, "a?", (), "entity - whole"), Q(2, "b?", (1,), "attribute - color")]
    out = dpg.summarize([(qs, [{1: "yes", 2: "yes"}, {1: "no", 2: "yes"}])])
    assert out["dpg_score"] == pytest.approx(100 * (1.0 + 0.0) / 2)
    assert out["l1/entity"] == 0 and out["l1/attribute"] == 100 and out["l2/attribute - color"] == 100
    with pytest.raises(ValueError, match="unknown question"):
        dpg.cascade([Q(1, "a?", (7,), "x")], {1: 1.0})
    assert math.isclose(dpg.summarize([(qs, [{1: "yes", 2: "no"}])])["dpg_score"], 50)
