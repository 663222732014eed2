"""Synthetic suites: fixed held-out items, their scorers, and the eval command end to end on renders."""

import json

import pytest

from xomni.cli import main as cli
from xomni.data.world import Scene, is_reserved_combo
from xomni.eval import geneval, suites
from xomni.eval.scene_judge import SceneObject
from xomni.stages import eval_suite


def test_items_are_fixed_and_held_out():
    a, b = suites.build("synth-geneval", 12), suites.build("synth-geneval", 12)
    assert a == b and [it["id"] for it in a] == [f"synth-geneval/{k:04d}" for k in range(12)]
    for it in a:
        s = Scene.from_dict(it["scene"])
        assert s.split == "heldout"
        assert s.text is not None or any(is_reserved_combo(g.color, g.shape) for g in s.groups)
    assert [it["metadata"]["tag"] for it in a] == [t for t in geneval.TAGS for _ in range(2)]


def test_train_split_builds_the_same_kinds_of_items_from_training_scenes():
    items = suites.build("synth-geneval", 12, split="train")
    assert [it["metadata"]["tag"] for it in items] == [t for t in geneval.TAGS for _ in range(2)]
    for it in items:
        s = Scene.from_dict(it["scene"])
        assert s.split == "train" and not any(is_reserved_combo(g.color, g.shape) for g in s.groups)
    with pytest.raises(ValueError, match="unknown split"):
        suites.build("synth-geneval", 12, split="test")


def test_text_suite_is_balanced_over_category_and_length():
    items = suites.build("synth-text-zh", 24)
    assert {(it["category"], it["length"]) for it in items} == {(c, n) for c in suites.CATEGORIES for n in suites.LENGTHS}
    assert all(it["lang"] == "zh" and it["text"] == [Scene.from_dict(it["scene"]).text.text] for it in items)


def test_position_items_hold_under_the_official_rule():
    for it in suites.build("synth-geneval", 60):
        meta = it["metadata"]
        if meta["tag"] == "position":
            a, b = Scene.from_dict(it["scene"]).objects
            assert meta["include"][1]["position"][0] in geneval.relative_position(a.box, b.box)


def test_dpg_answers_follow_the_judges():
    objs = [SceneObject("circle", "red", (0, 0, 20, 20), 1.0), SceneObject("circle", "red", (40, 0, 60, 20), 1.0),
            SceneObject("star", "blue", (0, 60, 20, 80), 1.0)]
    ask = suites.answer_dpg
    assert ask({"kind": "count", "shape": "circle", "color": "red", "count": 2}, objs, "") == "yes"
    assert ask({"kind": "color", "shape": "star", "color": "red"}, objs, "") == "no"
    assert ask({"kind": "relation", "a": "circle", "b": "star", "relation": "above"}, objs, "") == "yes"
    assert ask({"kind": "text", "text": "red fox", "lang": "en"}, objs, "A RED fox!") == "yes"
    assert ask({"kind": "text", "text": "红色", "lang": "zh"}, objs, "红") == "no"


def test_dpg_tells_groups_of_one_shape_apart_by_colour():
    """Two triangles, red right of brown: one triangle of any colour answered the one question they used to get."""
    from xomni.data.world import WorldConfig, make_scene

    s = next(s for i in range(5000) if (s := make_scene(WorldConfig(), "train", i)).relation is not None
             and s.text is None and s.groups[0].shape == s.groups[1].shape)
    a, b = s.objects
    assert a.color != b.color
    qs = suites.dpg_questions(s)
    assert [q["check"]["kind"] for q in qs] == ["shape", "count", "color_count", "color_count", "relation"]
    assert qs[-1]["parents"] == [qs[0]["qid"]]  # the shape: one object too many fails a count, not the relation

    def answers(objs):
        return [suites.answer_dpg(q["check"], [SceneObject(o.shape, o.color, o.box, 1.0) for o in objs], "")
                for q in qs]

    assert answers(s.objects) == ["yes"] * 5
    assert answers([a]) == ["yes", "no", "yes", "no", "no"]
    swapped = [type(a)(a.shape, b.color, a.box), type(b)(b.shape, a.color, b.box)]  # the colours' places swapped
    assert answers(swapped) == ["yes", "yes", "yes", "yes", "no"]
    # asked of any two of the shape (a prompt naming no colour): the pair in either order holds it, one alone not
    anyone = {**qs[-1]["check"], "a_color": None, "b_color": None}
    ask = suites.answer_dpg
    assert ask(anyone, [SceneObject(o.shape, "green", o.box, 1.0) for o in (b, a)], "") == "yes"
    assert ask(anyone, [SceneObject(a.shape, a.color, a.box, 1.0)], "") == "no"
    beside = SceneObject(a.shape, a.color, (a.box[0] + 200, a.box[1], a.box[2] + 200, a.box[3]), 1.0)
    assert ask({**anyone, "relation": "above"}, [SceneObject(a.shape, a.color, a.box, 1.0), beside], "") == "no"


def test_pope_metrics():
    items = [{"answer": "yes", "setting": "random"}, {"answer": "yes", "setting": "random"},
             {"answer": "yes", "setting": "adversarial"}, {"answer": "no", "setting": "adversarial"}]
    out = suites.score_pope(items, ["Yes.", "no", "maybe", "yes"])  # one hit, one miss, one non-answer, one false yes
    assert out["score"] == 0.25 and out["precision"] == 0.5 and out["recall"] == pytest.approx(1 / 3)
    assert out["f1"] == pytest.approx(0.4) and out["yes_ratio"] == 0.5
    assert out["setting/random"] == 0.5 and out["setting/adversarial"] == 0.0
    assert suites.normalize_answer(" 你 好。") == "你好"


def test_eval_suite_on_renders_writes_metrics_and_rescoring_reuses_images(tmp_path):
    cfg = eval_suite.Config(suite="synth-geneval", out=str(tmp_path), n=6)
    metrics = eval_suite.main(cfg)
    assert metrics["score"] == 1.0 and metrics["n"] == 6 and metrics["source"] == "renders"
    assert metrics["judge"] == "world-scene-judge"
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert {"suite", "score", "n", "judge", "source"} <= set(on_disk)
    stamp = (tmp_path / "images" / "0000.png").stat().st_mtime_ns
    (tmp_path / "metrics.json").unlink()
    assert eval_suite.main(cfg)["score"] == 1.0
    assert (tmp_path / "images" / "0000.png").stat().st_mtime_ns == stamp  # judged and scored again, not redrawn


def test_eval_suite_resumes_judging_after_an_interruption(tmp_path, monkeypatch):
    cfg = eval_suite.Config(suite="synth-text-en", out=str(tmp_path), n=4, batch_size=2)
    real = eval_suite.OCRPool.read_batch
    calls = {"n": 0}

    def dies_second_time(self, images):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, images)

    monkeypatch.setattr(eval_suite.OCRPool, "read_batch", dies_second_time)
    with pytest.raises(KeyboardInterrupt):
        eval_suite.main(cfg)
    assert len((tmp_path / "judged.jsonl").read_text().splitlines()) == 2  # the first batch is kept
    with open(tmp_path / "judged.jsonl", "a") as f:
        f.write('{"id": "synth-text-en-0002", "oc')  # a kill in the middle of the next line
    monkeypatch.setattr(eval_suite.OCRPool, "read_batch", real)
    assert eval_suite.main(cfg)["n"] == 4
    judged = [json.loads(line) for line in (tmp_path / "judged.jsonl").read_text().splitlines()]
    assert len(judged) == 4 and all("ocr" in r for r in judged)  # the cut line gone, judged again


def test_eval_cli_errors_are_clear(tmp_path, capsys):
    from xomni.pipeline import DEFAULT_CHECKPOINT

    image_only = tmp_path / "image_only"  # the shipped image side without its ar/
    image_only.mkdir()
    for part in ("text_tokenizer.json", "tokenizer", "decoder"):
        (image_only / part).symlink_to(DEFAULT_CHECKPOINT / part)
    assert cli(["eval", "synth-text-en", "--out", str(tmp_path), "--n", "2", "--source", "model",
                "--checkpoint", str(image_only)]) == 2
    assert "unified AR model" in capsys.readouterr().err
    assert cli(["eval", "synth-vqa", "--out", str(tmp_path / "v"), "--n", "2", "--checkpoint", str(tmp_path / "nope")]) == 2
    assert "lacks tokenizer, alignment_lm, text_tokenizer.json" in capsys.readouterr().err
    assert cli(["eval", "synth-text-en", "--out", str(tmp_path / "o"), "--n", "2", "--source", "paintings"]) == 2


def test_geneval_scores_colour_items_on_unseen_pairs_apart():
    from xomni.data.world import is_reserved_combo

    items = suites.build("synth-geneval", 120)
    colour = [it for it in items if it["metadata"]["tag"] in ("colors", "color_attr")]
    unseen = [it for it in colour if suites.unseen_pair(it["metadata"])]
    assert unseen and len(unseen) < len(colour)  # the held-out split gives both kinds
    for it in colour:
        pairs = [(x["color"], x["class"]) for x in it["metadata"]["include"]]
        assert suites.unseen_pair(it["metadata"]) == any(is_reserved_combo(c, s) for c, s in pairs)

    def drawn(it):  # a judge that finds exactly what the item asks, except on the unseen colour items
        ok = not suites.unseen_pair(it["metadata"])
        return {x["class"]: [geneval.Detection((10 + 30 * i, 10, 30 + 30 * i, 30), 1.0, x.get("color") if ok else "x")
                             for i in range(x["count"])] for x in it["metadata"]["include"]}

    got = suites.score_geneval(colour, [drawn(it) for it in colour], 0.3, 0.9)
    assert got["colour_pairs/unseen"] == 0.0 and got["colour_pairs/seen"] == 1.0
    assert got["colour_pairs/n_unseen"] == len(unseen) and got["colour_pairs/n_seen"] == len(colour) - len(unseen)
