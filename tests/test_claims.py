"""The paper's RL claims as checks (xomni/eval/claims.py), on hand-made scores."""

import itertools

import pytest

from xomni.eval import claims as C


def test_overtaking_step_and_the_trend_after_it():
    curve = [(0, 0.1), (10, 0.15), (20, 0.3), (30, 0.35)]
    cross, slope = C.overtaking(curve, best_of_g=0.2)
    assert cross == 20 and slope == pytest.approx(0.5)  # (0.35 - 0.30) over 10 steps, per 100
    assert C.overtaking(curve, best_of_g=0.4) == (None, 0.0)
    assert C.overtaking(curve, best_of_g=0.2, within=10) == (None, 0.0)  # too late
    assert C.probe_curve([{"step": 10, "probe_reward": 0.2}, {"step": 0, "probe_reward": 0.1, "probe_best_of_g": 0.3},
                          {"step": 5, "reward": 0.9}]) == ([(0, 0.1), (10, 0.2)], 0.3)


def test_fig2b_compares_every_probe_on_the_same_prompts():
    rows = [{"step": 0, "probe_reward": 0.2, "probe_prompt_rewards": [0.1, 0.3, 0.2],
             "probe_prompt_best": [0.2, 0.5, 0.9]},
            {"step": 10, "probe_reward": 0.35, "probe_prompt_rewards": [0.3, 0.4, None]},  # the hard prompt failed
            {"step": 20, "probe_reward": None, "probe_prompt_rewards": [None, None, None]},  # every group failed
            {"step": 30, "probe_reward": 0.4, "probe_prompt_rewards": [0.4, 0.5, 0.3]}]
    curve, start = C.probe_curve(rows)
    assert [s for s, _ in curve] == [0, 10, 30] and start == pytest.approx(0.35)  # prompts 0 and 1, every probe
    assert [v for _, v in curve] == pytest.approx([0.2, 0.35, 0.45])
    none_kept = [rows[0], {"step": 10, "probe_reward": 0.3, "probe_prompt_rewards": [None, None, 0.3]},
                 {"step": 20, "probe_reward": 0.3, "probe_prompt_rewards": [0.3, 0.3, None]}]
    assert C.probe_curve(none_kept) == ([(0, 0.2), (10, 0.3), (20, 0.3)], None)  # no common prompt: each probe's own


def test_fig2b_is_met_only_when_every_seed_overtakes_and_keeps_rising():
    k = C.key
    sft, rl = {k("synth-vqa"): 0.8}, [{k("synth-vqa"): 0.8}] * 2
    start = {"step": 0, "probe_reward": 0.1, "probe_best_of_g": 0.2}
    rising = [start, {"step": 10, "probe_reward": 0.25}, {"step": 20, "probe_reward": 0.3}]
    falling = [start, {"step": 10, "probe_reward": 0.3}, {"step": 20, "probe_reward": 0.25}]
    fig = lambda probes: next(c for c in C.check(sft, rl, probes, [1.0]) if c.claim.startswith("Fig. 2b"))  # noqa
    met = fig([rising, rising])
    assert met.met and "overtaken at step 10, then +0.500 per 100 steps, last 0.300" in met.measured
    assert not fig([rising, falling]).met  # overtaken, then falling back: not "keeps improving"


def test_claims_from_scores():
    k = C.key
    sft = {k("synth-text-en"): 0.10, k("synth-text-zh"): 0.05, k("synth-geneval"): 0.20, k("synth-geneval", 1.5): 0.30,
           k("synth-geneval", 3): 0.25, k("synth-vqa"): 0.80}
    rl = [{k("synth-text-en"): 0.30, k("synth-text-zh"): 0.10, k("synth-geneval"): 0.25, k("synth-geneval", 1.5): 0.26,
           k("synth-geneval", 3): 0.20, k("synth-vqa"): 0.78},
          {k("synth-text-en"): 0.40, k("synth-text-zh"): 0.10, k("synth-geneval"): 0.25, k("synth-geneval", 1.5): 0.25,
           k("synth-geneval", 3): 0.24, k("synth-vqa"): 0.80}]
    probes = [[{"step": 0, "probe_reward": 0.1, "probe_best_of_g": 0.2}, {"step": 10, "probe_reward": 0.25},
               {"step": 20, "probe_reward": 0.3}],
              [{"step": 0, "probe_reward": 0.1, "probe_best_of_g": 0.2}, {"step": 10, "probe_reward": 0.15}]]
    table = {c.claim.split(":")[0]: c for c in C.check(sft, rl, probes, [1.0, 1.5, 3.0])}
    assert not table["Fig. 2b"].met and "not overtaken" in table["Fig. 2b"].measured  # the second seed never does
    assert table["synth-text-en without CFG"].met and "+0.250 ± 0.071 (n=2)" in table["synth-text-en without CFG"].measured
    assert not table["synth-text-zh without CFG"].met  # +0.05 against +0.15
    assert not table["synth-geneval without CFG"].met  # +0.05 against +0.10
    gap = next(c for c in C.check(sft, rl, probes, [1.0, 1.5, 3.0]) if c.claim.startswith("synth-geneval: best CFG"))
    assert gap.met and gap.measured.startswith("SFT +0.100; RL +0.005")  # gaps 0.01 and 0.00
    assert table["synth-vqa"].met  # -0.02 and 0.00: mean -0.01
    assert "| claim | measured | bar | met |" in C.markdown(list(table.values()))
    with pytest.raises(ValueError, match="no RL model"):
        C.check(sft, [], probes, [1.0])
    with pytest.raises(ValueError, match="probe"):
        C.check(sft, rl, [[{"step": 1, "reward": 0.3}]], [1.0])


def test_derail_table_has_a_column_per_counted_suite_and_a_dash_where_not_counted():
    table = C.derail_markdown({"sft": {"a@1": 0.0, "b@1": None}, "rl_s0": {"a@1": 0.125, "b@1": 0.5}})
    assert table.splitlines() == ["| derailed images | a@1 | b@1 |", "|---|---|---|",
                                  "| sft | 0.000 | - |", "| rl_s0 | 0.125 | 0.500 |"]
    assert C.derail_markdown({"sft": {"a@1": None}}) == ""


def test_expected_best_of_is_the_mean_maximum_over_every_subset():
    # the 6 pairs of [1, 2, 3, 4] have maxima 2, 3, 4, 3, 4, 4: mean 20 / 6
    assert C.expected_best_of([4.0, 1.0, 3.0, 2.0], 2) == pytest.approx(20 / 6)
    assert C.expected_best_of([4.0, 1.0, 3.0, 2.0], 4) == 4.0  # all of them: the maximum
    assert C.expected_best_of([4.0, 1.0, 3.0, 2.0], 1) == pytest.approx(2.5)  # one: the mean
    values = [0.3, 0.1, 0.3, 0.9, 0.5, 0.1, 0.7]  # with ties: against the mean over every subset, counted out
    for k in range(1, 8):
        subsets = list(itertools.combinations(values, k))
        assert C.expected_best_of(values, k) == pytest.approx(sum(map(max, subsets)) / len(subsets))
    with pytest.raises(ValueError, match="best of 5"):
        C.expected_best_of([1.0, 2.0], 5)
