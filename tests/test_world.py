import hashlib

import pytest

from xomni.data.world import (GLYPH_INDEX, OBJECT_INSET, SPLIT_VERSION, WorldConfig, cell_labels, caption, is_reserved_bigram,
                              is_reserved_combo, is_reserved_word, make_scene, prompts, questions, relation_of, render,
                              COLORS, SHAPES, WORDS_EN, CHARS_ZH, Scene, object_masks, cell_roles, Obj, TextElement)


def _digest(image) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


def test_scene_is_deterministic_per_split_and_index():
    cfg = WorldConfig()
    a, b = make_scene(cfg, "train", 17), make_scene(cfg, "train", 17)
    assert a == b
    assert _digest(render(a)) == _digest(render(b))
    assert make_scene(cfg, "train", 18) != a


def test_scene_round_trips_through_dict():
    s = make_scene(WorldConfig(), "heldout", 3)
    assert Scene.from_dict(s.to_dict()) == s


@pytest.mark.parametrize("size", [(128, 128), (192, 128), (128, 256), (384, 384)])
def test_renders_at_any_size(size):
    w, h = size
    for i in range(10):
        s = make_scene(WorldConfig(width=w, height=h), "train", i)
        im = render(s)
        assert im.size == (w, h) and im.mode == "RGB"
        for o in s.objects:
            assert 0 <= o.box[0] < o.box[2] <= w and 0 <= o.box[1] < o.box[3] <= h


def test_bad_canvas_is_refused():
    with pytest.raises(ValueError, match="multiple"):
        WorldConfig(width=130)
    with pytest.raises(ValueError, match="below"):
        WorldConfig(width=32, height=32)
    with pytest.raises(ValueError, match="no whole"):
        WorldConfig(object_min=20, object_max=12)


@pytest.mark.parametrize("size,cells", [((128, 128), {2, 3}), ((64, 64), {1}), ((192, 128), {2, 3})])
def test_objects_sit_on_the_token_grid_apart(size, cells):
    cfg = WorldConfig(width=size[0], height=size[1])
    seen = set()
    for split in ("train", "heldout"):
        for i in range(60):
            s = make_scene(cfg, split, i)
            boxes = [(o.box[0] - OBJECT_INSET, o.box[1] - OBJECT_INSET, o.box[2] + OBJECT_INSET, o.box[3] + OBJECT_INSET)
                     for o in s.objects]  # the cell boxes the objects are drawn inside
            for b in boxes:
                assert all(v % cfg.cell == 0 for v in b) and b[2] - b[0] == b[3] - b[1]
                seen.add((b[2] - b[0]) // cfg.cell)
            others = boxes + ([s.text.box] if s.text else [])
            for j, a in enumerate(boxes):  # no object's cells overlap another's or the text's
                assert all(a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
                           for k, b in enumerate(others) if k != j)
    assert seen == cells


def test_vocabularies_are_large_enough():
    assert len(set(WORDS_EN)) >= 500 and len(set(CHARS_ZH)) >= 300
    assert len(COLORS) >= 8 and len(SHAPES) >= 6


def test_training_split_never_holds_reserved_items_and_heldout_always_does():
    cfg = WorldConfig()
    for i in range(300):
        s = make_scene(cfg, "train", i)
        assert not any(is_reserved_combo(g.color, g.shape) for g in s.groups)
        if s.text is not None and s.text.lang == "en":
            assert not any(is_reserved_word(w) for w in s.text.text.split())
        if s.text is not None and s.text.lang == "zh":
            t = s.text.text
            assert not any(is_reserved_bigram(a, b) for a, b in zip(t, t[1:]))
    for i in range(300):
        s = make_scene(cfg, "heldout", i)
        novel = any(is_reserved_combo(g.color, g.shape) for g in s.groups)
        if s.text is not None and s.text.lang == "en":
            assert all(is_reserved_word(w) for w in s.text.text.split())
            novel = True
        if s.text is not None and s.text.lang == "zh":
            t = s.text.text
            assert any(is_reserved_bigram(a, b) for a, b in zip(t, t[1:]))
            novel = True
        assert novel
    assert SPLIT_VERSION == "v3"


def test_language_matches_ground_truth():
    cfg = WorldConfig()
    for i in range(100):
        s = make_scene(cfg, "train", i)
        counts = {}
        for o in s.objects:
            counts[o.shape] = counts.get(o.shape, 0) + 1
        for q in questions(s):
            if q.kind == "count":
                shape = next(k for k, (plural, _) in SHAPES.items() if plural in q.question)
                assert q.answer == str(counts.get(shape, 0))
            if q.kind == "text":
                assert q.answer == s.text.text
        if s.relation is not None:
            assert relation_of(s.objects[0].box, s.objects[1].box) == s.relation
        expected = {"short", "medium", "dense", "photo"} if s.groups else {"short", "medium", "dense"}
        assert set(prompts(s)) == expected
        if s.text is not None:
            assert s.text.text in caption(s)


def test_chinese_text_scenes_get_chinese_captions():
    cfg = WorldConfig()
    s = next(s for s in (make_scene(cfg, "train", i) for i in range(200)) if s.text and s.text.lang == "zh")
    assert "写着" in caption(s) and s.text.text in caption(s)


def test_cell_labels_put_each_glyph_in_its_cell():
    cfg = WorldConfig()
    s = next(s for s in (make_scene(cfg, "train", i) for i in range(200)) if s.text and s.text.lang == "en")
    labels = cell_labels(s)
    x0, y0 = s.text.line_boxes[0][0] // 16, s.text.line_boxes[0][1] // 16
    word = s.text.lines[0]
    for i, ch in enumerate(word):
        if ch != " ":
            assert labels["glyph"][y0, x0 + i] == GLYPH_INDEX[ch + "t"]
            assert labels["glyph"][y0 + 1, x0 + i] == GLYPH_INDEX[ch + "b"]
    assert labels["glyph"].shape == (8, 8)
    assert (labels["color"] > 0).sum() >= 1 or all(o.box[2] - o.box[0] < 8 for o in s.objects)


def test_background_labels_name_the_colour_each_cell_shows():
    import numpy as np

    from xomni.data.world import BACKGROUND_LABELS, BACKGROUNDS

    cfg = WorldConfig()
    for kind in ("plain", "gradient", "stripes"):
        s = next(s for i in range(300) if (s := make_scene(cfg, "train", i)).background_kind == kind)
        labels = cell_labels(s)["background"]
        pixels = np.asarray(render(s), np.float32).reshape(8, 16, 8, 16, 3)
        first, second = (np.array(BACKGROUNDS[b][0], np.float32) for b in (s.background, s.background2))
        for r in range(8):
            for c in range(8):
                cell = pixels[r, :, c].reshape(-1, 3)
                nearer = np.linalg.norm(cell - second, axis=1) < np.linalg.norm(cell - first, axis=1)
                unmixed = np.minimum(np.linalg.norm(cell - first, axis=1), np.linalg.norm(cell - second, axis=1))
                if (unmixed < 8).mean() < 0.9:  # objects, a sign or a gradient's middle rows: no single colour
                    continue
                want = s.background2 if nearer.mean() > 0.5 else s.background
                assert BACKGROUND_LABELS[labels[r, c]] == want, (kind, r, c)
        assert (kind == "plain") == (labels == BACKGROUND_LABELS.index(s.background)).all()


def test_training_questions_never_answer_by_their_wording():
    """A training scene's "no" never names a held-out pair (it would be "no" every time: the name would answer),
    and no scene asks one question twice (a later turn would copy the answer)."""
    cfg = WorldConfig()
    for split in ("train", "heldout"):
        negatives = []
        for i in range(300):
            qs = questions(make_scene(cfg, split, i))
            assert len({q.question for q in qs}) == len(qs), (split, i)
            negatives += [q.question for q in qs if q.kind == "presence" and q.answer == "no"]
        named = [any(f" {c} {s}?" in q and is_reserved_combo(c, s) for c in COLORS for s in SHAPES) for q in negatives]
        assert (not any(named)) if split == "train" else any(named)


def test_dense_text_scenes_fill_the_canvas_with_training_text_only():
    for i in range(40):
        s = make_scene(WorldConfig(dense_text=True), "train", i)
        t = s.text.text
        assert len(s.objects) == 1 and not is_reserved_combo(s.objects[0].color, s.objects[0].shape)
        if s.text.lang == "zh":
            assert len(t) > 8 and not any(is_reserved_bigram(a, b) for a, b in zip(t, t[1:]))
        else:
            assert len(s.text.lines) == 2 and not any(is_reserved_word(w) for w in t.split())
        assert (cell_labels(s)["glyph"] > 0).sum() >= 16
    assert make_scene(WorldConfig(dense_text=True), "train", 3) != make_scene(WorldConfig(), "train", 3)
    with pytest.raises(ValueError, match="training split"):
        make_scene(WorldConfig(dense_text=True), "heldout", 0)


def test_chinese_characters_take_two_by_two_cells_and_silhouettes_cover_objects():
    s = next(s for s in (make_scene(WorldConfig(), "train", i) for i in range(200)) if s.text and s.text.lang == "zh")
    labels = cell_labels(s)
    x0, y0 = s.text.line_boxes[0][0] // 16, s.text.line_boxes[0][1] // 16
    ch = s.text.lines[0][0]
    assert [labels["glyph"][y0 + dy, x0 + dx] for dy in (0, 1) for dx in (0, 1)] == [GLYPH_INDEX[ch + q] for q in "abcd"]
    assert s.text.line_boxes[0][2] - s.text.line_boxes[0][0] == 32 * len(s.text.lines[0])
    # the silhouette label is the object mask, averaged over 4x4 px sub-squares
    sil = labels["silhouette"]
    assert sil.shape == (8, 8, 16) and sil.min() >= 0 and sil.max() <= 1
    covered = (object_masks(s) > 0).sum()
    assert sil.sum() * 16 == pytest.approx(covered)


def test_photo_prompts_speak_genevals_templates():
    """The `photo` level is the register of synth-geneval's prompts: every GenEval prompt the held-out suite builds
    from a scene is that scene's photo prompt with or without its colours and its relation, and the level names
    the colours for some scenes and not for others."""
    from xomni.data.world import photo_prompt
    from xomni.eval import geneval
    from xomni.eval.suites import geneval_metadata

    cfg, seen, colored = WorldConfig(), 0, set()
    for i in range(300):
        s = make_scene(cfg, "heldout", i)
        if s.groups:
            colored.add(prompts(s)["photo"] == photo_prompt(s, True))
        for tag in geneval.TAGS:
            meta = geneval_metadata(s, tag)
            if meta is not None:
                seen += 1
                assert meta["prompt"] in {photo_prompt(s, c, r) for c in (True, False) for r in (True, False)}
    assert seen > 100 and colored == {True, False}


def test_cell_roles_mark_where_each_object_starts_in_raster_order():
    s = make_scene(WorldConfig(), "train", 0)
    s.objects = [Obj("circle", "red", (18, 34, 46, 62)), Obj("square", "blue", (66, 2, 94, 46))]  # cells c1-2 r2-3; c4-5 r0-2
    s.text = TextElement("en", "sign", s.text.plate if s.text else "white", ["ab"], "short", (0, 96, 32, 128),
                         [(0, 96, 32, 128)])
    roles = cell_roles(s, 8, 8)
    grid = [roles[r * 8 : (r + 1) * 8] for r in range(8)]
    assert [(r, c) for r in range(8) for c in range(8) if grid[r][c] == "object, first cell"] == [(0, 4), (2, 1)]
    assert {(r, c) for r in range(8) for c in range(8) if grid[r][c] == "object"} == (
        {(0, 5), (1, 4), (1, 5), (2, 4), (2, 5), (2, 2), (3, 1), (3, 2)})
    assert {(r, c) for r in range(8) for c in range(8) if grid[r][c] == "text"} == {(6, 0), (6, 1), (7, 0), (7, 1)}
    # background before the second object's first cell (2, 1), and after it, where no object may start any more
    assert roles.index("background, all started") == 2 * 8 + 3 and roles.count("background") == 17 - 4
    assert roles.count("background, all started") == 64 - 2 - 8 - 4 - 13
    s.objects = []
    assert set(cell_roles(s, 8, 8)) == {"text", "background, all started"}
