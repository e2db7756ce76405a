"""Clock or Pizza: the split of the logits' answer-axis components, Zhong et al.'s two
measures, and the label, each held to the hand-built Clock, the hand-built Pizza, mixes of
the two and untrained models (the label's thresholds are calibrated on these alone)."""
import math

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, strategies as st

from tinymod.analysis import clock_pizza as cp, construct, tabulate
from tinymod.cli import main
from tinymod.model import rnn
from tinymod.model.data import all_tuples
from tinymod.reports import claims, pipeline
from tinymod.training import checkpoint

P, FREQS = 31, [3, 7, 11]


@pytest.fixture(scope="module")
def built():
    """{name: (params, logits grid)} for the constructions and an untrained model, p = 31."""
    out = {}
    for name, kwargs in {"clock": {}, "pizza": {"form": "pizza"}, "mix": {"pizza_share": 0.5},
                         "mix10": {"pizza_share": 0.1}}.items():
        params, accuracy = construct.build(P, FREQS, phases=16, offsets=8, scale=30, **kwargs)
        assert accuracy == 1.0
        out[name] = params, tabulate.model_tables(params, "relu", 2)["logits"]
    fresh = rnn.init_params(P, 32, 32, seed=0, dtype="float64")
    out["untrained"] = fresh, tabulate.model_tables(fresh, "relu", 2)["logits"]
    return out


@pytest.mark.parametrize("p, T", [(5, 2), (7, 2), (5, 3), (3, 4)])
def test_terms_partition_every_non_constant_frequency_vector(p, T):
    for k in range(1, p // 2 + 1):
        masks = cp.term_masks(p, T, k)
        count = sum(m.astype(int) for m in masks.values())
        assert count[(0,) * T] == 0 and np.all(count.ravel()[1:] == 1)
        assert masks["clock"].sum() == 1 and masks["clock"][(k,) * T]
        assert masks["pizza"].sum() == math.comb(T, 2) * (p - 1) or T > 2   # pairs may share a vector
        if T == 2:
            assert masks["pizza"].sum() == p - 1 and masks["difference"].sum() == p - 1


@given(st.sampled_from([5, 7, 11]), st.integers(0, 2**32 - 1))
def test_the_split_is_parseval_and_blind_to_a_row_constant(p, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((p, p, p))
    rows = cp.frequency_fits(logits)
    shifted = cp.frequency_fits(logits + rng.standard_normal((p, p, 1)))   # softmax ignores it
    for r, s in zip(rows, shifted):
        assert sum(r["terms"].values()) == pytest.approx(1.0, abs=1e-12)
        assert r["free_fvu"] == pytest.approx(r["clock_fvu"] - r["pizza_excess"])
        assert s["terms"] == pytest.approx(r["terms"], abs=1e-10)
    assert sum(r["variance_share"] for r in rows) == pytest.approx(1.0)


@given(st.sampled_from([7, 11, 13]), st.floats(0.1, 5), st.floats(0, 2 * math.pi))
def test_a_clock_table_is_all_clock_term_and_a_pizza_table_holds_one_minus_8_over_pi2(p, amplitude, phase):
    a, b, c = np.meshgrid(*[np.arange(p)] * 3, indexing="ij")
    k = 2
    w = 2 * np.pi * k / p
    clock = amplitude * np.cos(w * (a + b - c) - phase)
    row = cp.frequency_fits(clock)[k - 1]
    assert row["terms"]["clock"] == pytest.approx(1.0) and row["pizza_excess"] == pytest.approx(0, abs=1e-12)
    assert cp.judge(cp.frequency_fits(clock), [k])["label"] == "Clock"
    pizza = amplitude * np.abs(np.cos(w * (a - b) / 2)) * np.cos(w * (a + b - c) - phase)
    row = cp.frequency_fits(pizza)[k - 1]
    # the amplitude |cos(w (a - b) / 2)| has mean 2 / pi and mean square 1 / 2 (p -> infinity)
    assert row["clock_fvu"] == pytest.approx(1 - 8 / np.pi ** 2, abs=0.02)
    assert row["free_fvu"] == pytest.approx(0, abs=1e-12)
    assert cp.judge(cp.frequency_fits(pizza), [k])["label"] == "Pizza"


def test_the_constructions_read_clock_pizza_and_mixed_and_an_untrained_model_neither(built):
    labels = {name: cp.judge(cp.frequency_fits(logits), FREQS) for name, (_, logits) in built.items()}
    assert labels["clock"]["label"] == "Clock" and labels["clock"]["pizza_excess"] < 1e-3   # the 8 offsets leave a ripple in a - b
    assert labels["pizza"]["label"] == "Pizza" and labels["pizza"]["pizza_excess"] == pytest.approx(0.19, abs=0.01)
    assert labels["mix"]["label"] == "mixed" and 0.03 < labels["mix"]["pizza_excess"] < 0.08
    # a 10% admixture stays under the Clock's excess bar: the label calls it Clock, by design
    assert labels["mix10"]["label"] == "Clock" and 0.001 < labels["mix10"]["pizza_excess"] < 0.005
    assert labels["untrained"]["label"] == "neither" and labels["untrained"]["kappa"] < 0.1
    every = cp.judge(cp.frequency_fits(built["untrained"][1]), range(1, P // 2 + 1))
    assert every["label"] == "neither" and every["variance_share"] == pytest.approx(1.0)


def test_zhongs_measures_tell_the_constructions_apart(built):
    measures = {name: (cp.distance_irrelevance(logits), cp.gradient_symmetricity(params))
                for name, (params, logits) in built.items() if name != "mix10"}
    assert measures["clock"][0] > 0.9 and measures["pizza"][0] < 0.1
    assert measures["pizza"][1] > 0.99 and abs(measures["clock"][1]) < 0.2
    assert measures["clock"][1] < measures["mix"][1] < measures["pizza"][1]


def test_gradient_symmetricity_takes_each_positions_embedding_gradient():
    """The tiled table gives each position's gradient; where the tokens differ, their rows of
    the real dE are exactly those gradients."""
    p, T = 5, 3
    params = rnn.init_params(p, 4, 6, seed=3, dtype="float64")
    x = np.array([[1, 4, 2]])
    c = 3
    _, cache = rnn.forward(params, x)
    dlogits = np.zeros((1, p))
    dlogits[0, c] = 1
    dE = rnn.backward(params, cache, dlogits)["E"]
    tiled = {**params, "E": np.concatenate([params["E"]] * T)}
    shifted = x + p * np.arange(T)
    _, cache = rnn.forward(tiled, shifted)
    rows = rnn.backward(tiled, cache, dlogits)["E"][shifted[0]]
    np.testing.assert_allclose(rows, dE[x[0]], rtol=1e-12, atol=1e-15)
    # and one position's gradient against a central difference of the logit
    eps, direction = 1e-6, np.random.default_rng(0).standard_normal(4)
    logit = lambda E: rnn.forward({**tiled, "E": E}, shifted)[0][0, c]
    bumped = [tiled["E"].copy() for _ in range(2)]
    bumped[0][shifted[0, 1]] += eps * direction
    bumped[1][shifted[0, 1]] -= eps * direction
    assert (logit(bumped[0]) - logit(bumped[1])) / (2 * eps) == pytest.approx(rows[1] @ direction, rel=1e-6)


def test_three_tokens_measure_dependence_beyond_the_sum():
    p = 7
    x = all_tuples(p, 3)
    s, w = x.sum(axis=1), 2 * np.pi * 2 / p
    c = np.arange(p)
    clock = np.cos(w * (s[:, None] - c)).reshape(p, p, p, p)
    modulated = (np.abs(np.cos(w * (x[:, 0] - x[:, 2]) / 2))[:, None] * np.cos(w * (s[:, None] - c))).reshape(p, p, p, p)
    assert cp.judge(cp.frequency_fits(clock), [2])["label"] == "Clock"
    assert cp.judge(cp.frequency_fits(modulated), [2])["label"] == "Pizza"
    assert cp.distance_irrelevance(modulated) < cp.distance_irrelevance(clock + 0.01 * np.random.default_rng(0).standard_normal(clock.shape))


def test_the_mechanism_claim_fails_on_the_pizza_and_an_untrained_model_and_holds_on_the_clock(built):
    config = {"p": P, "activation": "relu", "seq_len": 2, "frac": 0.3, "seed": 0, "step": 0}
    verdicts = {}
    for name in ("clock", "pizza", "untrained"):
        report = pipeline.fourier_report(built[name][0], config)
        assert report["clock_pizza"]["sets"]["in_use"]["frequencies"] == report["in_use_key_frequencies"]
        verdicts[name] = claims.circuit_claim(report)
    assert verdicts["clock"].verdict == "reproduced" and "label Clock" in verdicts["clock"].ours
    assert verdicts["pizza"].verdict == "not" and "label Pizza" in verdicts["pizza"].ours
    assert verdicts["untrained"].verdict == "not"


def test_cli_construct_names_what_it_builds(tmp_path):
    runner = CliRunner()
    for form, word in (("clock", "a Clock"), ("pizza", "a Pizza")):
        result = runner.invoke(main, ["construct", "--p", "13", "--freqs", "2,5", "--form", form,
                                      "--out", str(tmp_path / form)])
        assert result.exit_code == 0 and word in result.output, result.output
    result = runner.invoke(main, ["construct", "--p", "13", "--freqs", "2", "--pizza-share", "0.5",
                                  "--out", str(tmp_path / "mix")])
    assert result.exit_code == 0 and "Pizza share 0.5" in result.output, result.output
    assert checkpoint.load(tmp_path / "mix" / "model.npz")[1]["constructed"]["pizza_share"] == 0.5
    for bad in (["--form", "bagel"], ["--pizza-share", "1.5"], ["--offsets", "0"]):
        result = runner.invoke(main, ["construct", "--p", "13", "--freqs", "2", *bad, "--out", str(tmp_path / "x")])
        assert result.exit_code == 2 and "Traceback" not in result.output and not (tmp_path / "x").exists()


def test_build_refuses_an_unknown_form_or_share():
    with pytest.raises(Exception, match="form must be one of"):
        construct.build(11, [2], form="bagel")
    with pytest.raises(Exception, match=r"pizza share must lie in \[0, 1\]"):
        construct.build(11, [2], pizza_share=-0.1)


def test_one_token_terms_keep_distance_irrelevance_high_but_not_the_label():
    """docs/beyond.md's reading of the gated cells: terms in one token alone vary along a + b
    at a fixed a - b, so distance irrelevance stays near 1 while the Clock form's share falls
    and the label is not Clock. A Clock plus a one-token term, built by hand."""
    p, k = 13, 3
    a, b, c = np.meshgrid(np.arange(p), np.arange(p), np.arange(p), indexing="ij")
    w = 2 * np.pi * k / p
    clock = np.cos(w * (a + b - c))
    mixed = clock + 0.8 * np.cos(w * (a - c))                  # a one-token term (in a) at frequency k
    rows = cp.frequency_fits(mixed)
    judged = cp.judge(rows, [k])
    assert judged["kappa"] < cp.CLOCK_KAPPA and judged["label"] == "neither"
    assert rows[k - 1]["terms"]["one_token"] > 0.3 and rows[k - 1]["pizza_excess"] < 1e-12
    assert cp.distance_irrelevance(mixed) > 0.9
    assert cp.judge(cp.frequency_fits(clock), [k])["label"] == "Clock"
