import pytest
from PIL import Image

from xomni.cli import build_parser, main


@pytest.mark.parametrize("argv", [["train", "tokenizer"], ["train", "decoder"], ["tokenize"], ["reconstruct"],
                                  ["eval", "reconstruction"], ["publish"], ["train", "ar"], ["generate"], ["understand"],
                                  ["render"],
                                  ["eval", "synth-geneval"], ["eval", "longtext"], ["report"]])
def test_every_command_explains_itself(argv, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(argv + ["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: xomni" in out and "--" in out


def test_a_flag_without_a_curated_help_explains_itself_from_its_fields_comment(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["publish", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--ar STR the unified model's folder (e.g. out/tiny/ar_sft/model), shipped as ar/ (default: )" in out


def test_flags_map_onto_the_config():
    args = build_parser().parse_args(["train", "decoder", "--steps", "7", "--resume", "false", "--lr", "0.01"])
    assert args.steps == 7 and args.resume is False and args.lr == 0.01


def test_bad_image_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    Image.new("RGB", (20, 20)).save(tmp_path / "small.png")
    assert main(["reconstruct", str(tmp_path / "small.png"), "--out", str(tmp_path / "o.png")]) == 2
    assert "minimum side" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
    (tmp_path / "x.png").write_text("hello")
    assert main(["reconstruct", str(tmp_path / "x.png"), "--out", str(tmp_path / "o.png")]) == 2
    assert "not an image" in capsys.readouterr().err


def test_publish_flags_do_not_shadow_the_command(tmp_path, capsys):
    assert main(["publish", "--run", str(tmp_path / "nothing"), "--dest", str(tmp_path / "d")]) == 2
    assert "train every stage first" in capsys.readouterr().err


def test_render_writes_the_scene_and_its_ground_truth(tmp_path, capsys):
    import json

    from xomni.data.world import WorldConfig, make_scene, questions

    assert main(["render", "--out", str(tmp_path / "s.png"), "--index", "3", "--size", "128x64"]) == 0
    got = json.loads(capsys.readouterr().out)
    scene = make_scene(WorldConfig(width=128, height=64), "heldout", 3)
    assert got["questions"] == [[q.question, q.answer] for q in questions(scene)]
    assert Image.open(tmp_path / "s.png").size == (128, 64)
    assert main(["render", "--out", str(tmp_path / "t.png"), "--size", "100x90"]) == 2  # not whole cells
    assert "multiple of the cell size" in capsys.readouterr().err and not (tmp_path / "t.png").exists()


def test_grpo_preset_fills_what_is_not_given_and_an_unknown_one_is_refused(tmp_path, capsys):
    from xomni.cli import _config
    from xomni.stages import train_grpo

    def resolved(*flags):
        return train_grpo.resolve(_config(train_grpo.Config, build_parser().parse_args(["train", "grpo", *flags])))

    tiny, paper = resolved(), resolved("--preset", "paper", "--lr", "2e-6")
    assert (tiny.steps, tiny.prompts_per_step, tiny.rollouts, tiny.lr, tiny.min_p) == (100, 16, 8, 5e-5, 0.03)
    assert (paper.steps, paper.prompts_per_step, paper.rollouts, paper.lr, paper.beta) == (200, 512, 16, 2e-6, 0.01)
    assert resolved("--min-p", "0").min_p == 0.0  # a given 0 is not "unset"
    with pytest.raises(ValueError, match="unknown GRPO preset"):
        train_grpo.resolve(train_grpo.Config(preset="huge"))
    for stage in ("grpo", "ar", "decoder", "tokenizer"):  # refused by the parser, before anything is written
        with pytest.raises(SystemExit):
            main(["train", stage, "--preset", "huge", "--out", str(tmp_path / "g")])
        assert "invalid choice: 'huge'" in capsys.readouterr().err and not (tmp_path / "g").exists()
    assert main(["train", "grpo", "--neg-scale", "2", "--out", str(tmp_path / "g")]) == 2
    assert "negative advantages must be in [0, 1]" in capsys.readouterr().err and not (tmp_path / "g").exists()
    assert main(["train", "grpo", "--keep-understanding", "-1", "--out", str(tmp_path / "g")]) == 2
    assert "keep_understanding must be >= 0" in capsys.readouterr().err and not (tmp_path / "g").exists()
    for stage in ("grpo", "ar", "decoder"):  # one --bf16 form for every training stage
        assert main(["train", stage, "--bf16", "yes", "--out", str(tmp_path / stage)]) == 2
        assert "bf16 is true, false or auto" in capsys.readouterr().err and not (tmp_path / stage).exists()


def test_counts_below_their_minimum_are_refused_before_anything_is_written(tmp_path, capsys):
    cases = [(["train", "ar", "--steps", "0"], "--steps 0"),
             (["train", "decoder", "--save-every", "0"], "--save-every 0"),
             (["train", "tokenizer", "--eval-every", "0"], "--eval-every 0"),
             (["train", "grpo", "--rollouts", "1"], "--rollouts 1: must be at least 2"),
             (["train", "grpo", "--updates", "0"], "--updates 0"),
             (["train", "grpo", "--min-p", "1.5"], "bad sampling settings"),
             (["eval", "reconstruction", "--n", "0"], "--n 0"), (["tokenize", "--shard-size", "0"], "--shard-size 0"),
             (["train", "tokenizer", "--turns", "0"], "--turns 0"), (["train", "ar", "--turns", "0"], "--turns 0"),
             (["tokenize", "--split", "heldout", "--dense-text", "true"], "only in the training split")]
    for argv, message in cases:
        assert main([*argv, "--out", str(tmp_path / "o")]) == 2, argv
        assert message in capsys.readouterr().err and not (tmp_path / "o").exists(), argv
