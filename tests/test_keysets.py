"""The verdicts' foundations: the logit-energy strength order, the three named key sets, the
key curve, the fits of named objects, and the claims with their whys."""
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from tinymod.analysis import construct, fits, fourier, keysets, tabulate
from tinymod.model import data, rnn
from tinymod.reports import claims, pipeline
from tinymod.cli import main

SCALE = 30.0     # hand-built logits scaled so the model is confident (loss well below ln p)


def confident(p, freqs):
    """A hand-built model whose loss over all pairs is below 1e-6, as a grokked model's is
    (2e-6 for `default`): the logit scale grows by 1.5x from SCALE until it is. (At loss 1e-3
    the weakest of 3, 6, 9 mod 19 raises it only 1.9x: a barely confident model leans on its
    strongest frequencies.)"""
    scale = SCALE
    while True:
        params, accuracy = construct.build(p, freqs, phases=16, offsets=8, scale=scale)
        loss = keysets.Scorer(params, "relu", 2)([])["loss"]
        assert loss > 0, "stepped past float64's smallest loss"
        if loss < 1e-6:
            return params, accuracy
        scale *= 1.5


@st.composite
def planted(draw):
    p = draw(st.sampled_from([7, 11, 13, 17, 19, 23]))
    freqs = draw(st.sets(st.integers(1, (p - 1) // 2), min_size=1, max_size=3))
    return p, sorted(freqs)


def direct_restricted_excluded(logits, freqs, train, test):
    """Nanda's losses by an independent least-squares solve over the tuple grid: each answer's
    table regressed on a constant and cos/sin(w_k s), k in freqs."""
    p, T = logits.shape[-1], logits.ndim - 1
    tuples = data.all_tuples(p, T)
    s = tuples.sum(axis=1) % p
    L = logits.reshape(-1, p)
    columns = [np.ones(len(s))]
    for k in freqs:
        columns += [np.cos(2 * np.pi * k * s / p), np.sin(2 * np.pi * k * s / p)]
    X = np.stack(columns, axis=1)
    coef, *_ = np.linalg.lstsq(X, L, rcond=None)
    fitted = X @ coef                                          # mean + key terms
    key_part = fitted - L.mean(axis=0)
    restricted = fitted.reshape(logits.shape)
    excluded = (L - key_part).reshape(logits.shape)
    return (keysets.cross_entropy(restricted, tuples), keysets.cross_entropy(restricted, test),
            keysets.cross_entropy(excluded, train))


@given(planted())
def test_hand_built_models_in_use_is_the_planted_set_and_the_curve_is_nanda(case):
    p, freqs = case
    params, accuracy = confident(p, freqs)
    assert accuracy == 1.0
    tables = tabulate.model_tables(params)
    ds = data.make_dataset(p, 2, 0.3, 0)
    split = (ds.x_train, ds.x_test)
    r = keysets.find_key_sets(params, "relu", 2, tables["logits"], freqs, "planted", split)
    assert r["in_use_key_frequencies"] == freqs
    assert set(r["functional_key_frequencies"]) <= set(freqs)        # sufficient: maybe fewer
    assert sorted(r["strength_order"][:len(freqs)]) == freqs        # the planted ones hold the energy
    ratios = [row["removal_loss_ratio"] for row in r["key_curve"]]
    assert all(x >= 2 for x in ratios[:len(freqs)])
    assert all(x == pytest.approx(1, abs=1e-9) for x in ratios[len(freqs):])   # nothing to remove
    assert len(r["key_curve"]) == min(p // 2, len(freqs) + 3)
    for row in r["key_curve"]:
        direct = direct_restricted_excluded(tables["logits"], r["strength_order"][:row["n"]], *split)
        got = (row["restricted_loss"], row["restricted_test_loss"], row["excluded_loss"])
        np.testing.assert_allclose(got, direct, rtol=1e-9, atol=1e-12)
    used = r["key_sets"]["in_use"]
    assert used["logit_energy_share"] > 0.999        # the phase grid's aliases leave a little elsewhere
    # Nanda's check, as the mechanism claim reads it: keeping the set loses little, taking
    # it out leaves the uniform guess (the phase grid's leftover grows with the logit scale)
    assert used["restricted_loss"] <= claims.CIRCUIT * r["model_loss"]
    assert used["excluded_loss"] >= math.log(p) / 2


@given(planted())
def test_at_scale_1_the_functional_set_is_relative_to_the_model_and_the_planted_set_is_the_circuit(case):
    """A barely confident hand-built model (loss near ln p, above the 99% level's bar): the
    functional rule, taken along the logit-energy order, is relative to the model (keep-only
    loss within 2x its own, accuracy within a point) and stays inside the planted set; keeping
    only the planted set loses nothing; taking it out leaves the uniform guess."""
    p, freqs = case
    params, _ = construct.build(p, freqs, phases=16, offsets=8)
    tables = tabulate.model_tables(params)
    ds = data.make_dataset(p, 2, 0.3, 0)
    r = keysets.find_key_sets(params, "relu", 2, tables["logits"], freqs, "planted", (ds.x_train, ds.x_test))
    assert r["model_loss"] > math.log(1 / keysets.LEVEL)
    n = len(r["functional_key_frequencies"])
    assert 1 <= n and set(r["functional_key_frequencies"]) <= set(freqs)
    assert [row["frequency"] for row in r["key_curve"][:n]] == r["strength_order"][:n]
    kept = r["key_curve"][n - 1]
    assert kept["keep_loss"] <= keysets.FACTOR * r["model_loss"]
    assert kept["keep_accuracy"] >= r["model_accuracy"] - keysets.ABOVE_BAR_ACCURACY
    if n > 1:
        shorter = r["key_curve"][n - 2]
        assert (shorter["keep_loss"] > keysets.FACTOR * r["model_loss"]
                or shorter["keep_accuracy"] < r["model_accuracy"] - keysets.ABOVE_BAR_ACCURACY)
    planted = r["key_sets"]["spectral"]
    assert planted["restricted_loss"] == pytest.approx(r["model_loss"], rel=1e-5)   # measured ~1.4e-6
    assert planted["excluded_loss"] == pytest.approx(math.log(p), abs=0.01)


@given(st.sampled_from([5, 6, 7, 8, 11]), st.sampled_from([2, 3]), st.integers(0, 2**32 - 1))
def test_strength_order_is_the_direct_logit_energy(p, T, seed):
    logits = np.random.default_rng(seed).standard_normal((p,) * T + (p,))
    energy = keysets.logit_energy(logits)
    s = data.all_tuples(p, T).sum(axis=1) % p
    L = logits.reshape(-1, p)
    for k in range(1, p // 2 + 1):
        waves = [np.cos(2 * np.pi * k * s / p)] + ([] if 2 * k == p else [np.sin(2 * np.pi * k * s / p)])
        X = np.stack(waves, axis=1)
        coef, *_ = np.linalg.lstsq(X, L, rcond=None)
        assert energy[k] == pytest.approx(float(np.sum((X @ coef) ** 2)), rel=1e-9)
    assert keysets.strength_order(energy) == sorted(range(1, p // 2 + 1), key=lambda k: -energy[k])


def test_strength_order_ties_go_to_the_smaller_frequency():
    p = 11
    a, b, c = np.ix_(np.arange(p), np.arange(p), np.arange(p))
    wave = lambda k: np.cos(2 * np.pi * k * (a + b - c) / p)
    energy = keysets.logit_energy(wave(4) + wave(2) + 0.5 * wave(5))
    assert energy[2] == pytest.approx(energy[4], rel=1e-12)
    assert keysets.strength_order(energy)[:3] == [2, 4, 5]


@given(st.sampled_from([5, 7, 11]), st.integers(1, 6), st.integers(0, 2**32 - 1), st.data())
def test_fits_are_zero_on_exact_fourier_tables_and_equal_an_independent_r2(p, H, seed, data_):
    rng = np.random.default_rng(seed)
    freqs = sorted(data_.draw(st.sets(st.integers(1, p // 2), min_size=1, max_size=2)))
    a = np.arange(p)
    X = fourier.design([a], freqs, p)                           # (p, 1 + 2|S|)
    exact = X @ rng.standard_normal((X.shape[1], H))            # (p, H) exactly Fourier
    scored = fits.score(exact, X)
    assert scored["fvu"] <= 1e-12 and scored["units_constant"] == 0
    noisy = exact + rng.standard_normal((p, H))
    scored = fits.score(noisy, X)
    coef, *_ = np.linalg.lstsq(X, noisy, rcond=None)
    ss_res = np.sum((noisy - X @ coef) ** 2)
    ss_tot = np.sum((noisy - noisy.mean(axis=0)) ** 2)
    r2 = 1 - ss_res / ss_tot
    assert scored["fvu"] == pytest.approx(1 - r2, rel=1e-9)
    assert scored["relative_l2"] == pytest.approx(math.sqrt(1 - r2), rel=1e-9)


@given(planted())
def test_hand_built_pre_activations_are_exactly_fourier_at_the_planted_set(case):
    p, freqs = case
    params, _ = confident(p, freqs)
    tables = tabulate.model_tables(params)
    out = fits.fit_named_objects(tables, "relu", {"planted": freqs, "none": []})
    assert out["none"] is None
    got = out["planted"]
    assert got["h1_preactivation"]["fvu"] <= 1e-12
    assert got["h2_preactivation"]["fvu"] <= 1e-12
    assert got["logits"]["fvu"] < 0.01 and 0 <= got["h2"]["fvu"] < 1


def untrained(p=23, T=2, activation="relu"):
    params = rnn.init_params(p, 16, 16, 0, "float64")
    config = {"p": p, "seq_len": T, "activation": activation, "frac": 0.5, "seed": 0, "step": 0}
    return params, config


def test_an_untrained_model_uses_no_frequency_and_fails_every_claim_with_a_why():
    from tinymod.analysis import ablate, svd
    params, config = untrained()
    f = pipeline.fourier_report(params, config)
    assert len(f["in_use_key_frequencies"]) <= 1
    assert f["fits"]["in_use"] is None or len(f["in_use_key_frequencies"]) == 1
    key, strength = keysets.weight_key_frequencies(params)
    matrices = svd.measure_matrices(params, "relu", key)
    abl = ablate.measure_removals(params, config, key, strength, seeds=1)
    verdicts = claims.claims(f, matrices, abl)
    assert len(verdicts) == 8
    for c in verdicts:
        assert not c.verdict.startswith("reproduced"), c
        assert c.why and c.criterion, c


@pytest.mark.parametrize("T, activation", [(3, "relu"), (2, "tanh")])
def test_three_tokens_and_tanh_have_a_curve_and_fits_whose_rules_say_what_they_use(T, activation):
    params, config = untrained(p=7, T=T, activation=activation)
    f = pipeline.fourier_report(params, config)
    assert f["key_curve"] and f["key_curve"][0]["n"] == 1
    assert "strength order" in f["key_curve_rule"]
    assert f["fits"]["rule"]["T > 2" if T > 2 else "T = 2"]
    chosen = {"functional": f["functional_key_frequencies"]}
    out = fits.fit_named_objects(tabulate.model_tables(params, activation, T), activation, chosen)
    names = set(out["functional"] or {})
    expected = ({f"h{t}_preactivation" for t in range(1, T + 1)} | {f"h{T}", "logits"} if T > 2 else
                {"h1_preactivation", "h2_preactivation", "h2", "logits"})
    assert names == expected or out["functional"] is None
    assert (out["share_well_explained_nanda"] is None) == (T > 2)
    assert ("3 w_k" in out["rule"]["T = 2"] or "m = 2 for relu, 3 for tanh" in out["rule"]["T = 2"])


def test_cli_fourier_and_report_on_a_confident_hand_built_model(tmp_path):
    runner = CliRunner()
    made = runner.invoke(main, ["construct", "--p", "13", "--freqs", "2,5", "--out", str(tmp_path),
                                "--phases", "16", "--offsets", "8", "--scale", str(SCALE)])
    assert made.exit_code == 0, made.output
    result = runner.invoke(main, ["fourier", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "in use     2: 2 5" in result.output
    f = json.loads((tmp_path / "fourier.json").read_text())
    for field in ("key_frequencies", "in_use_key_frequencies"):
        assert f[field] == [2, 5], field
    assert set(f["in_use_counts_by_factor"]) == {"1.5", "2", "3", "5"}
    assert set(f["functional_counts_by_level"]) == {"0.9", "0.99", "0.999", "0.9999"}
    assert {"fit", "energy_share_fit", "logit_measures", "functional"}.isdisjoint(f)     # contract 5's removals
    for name in ("spectral", "functional", "in_use"):
        assert {"frequencies", "rule", "logit_energy_share", "restricted_loss", "excluded_loss"} <= set(f["key_sets"][name])
    assert set(f["fits"]["in_use"]) == {"h1_preactivation", "h2_preactivation", "h2", "logits"}
    assert (tmp_path / "key_curve.png").read_bytes()[:4] == b"\x89PNG"
    result = runner.invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "report.md").read_text()
    assert "| claim | paper | ours | verdict | criterion | why |" in text and "one sample" in text
    verdicts = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in result.output.splitlines()
                if not line.startswith(" ") and ": " in line and not line.startswith("wrote")}
    assert verdicts["a few frequencies carry the computation (sparse Fourier structure)"] == "reproduced"
    assert verdicts["hidden pre-activations are cos/sin of the key frequencies"] == "reproduced under both readings"
    assert verdicts["the logits are Fourier multiplication (Clock), not Pizza, at the frequencies in use"] == "reproduced"
    assert verdicts["about six key frequencies"] == "not"                   # 2 is not within 2x of 6
    assert result.output.count("    why: ") == 8
    records = json.loads((tmp_path / "claims.json").read_text())
    assert records["model_step"] == f["model_step"] and records["statuses"] == ["reproduced", "partly", "not"]
    by_id = {c["id"]: c for c in records["claims"]}
    from tinymod.analysis.records import ClaimRecord, FourierRecord, KeySet
    assert set(f) == set(FourierRecord.__annotations__)              # the typed record is the file
    assert all(set(e) <= set(KeySet.__annotations__) for e in f["key_sets"].values())
    assert all(set(c) == set(ClaimRecord.__annotations__) for c in records["claims"])
    assert list(by_id) == ["sparse", "count", "low_rank", "aligned", "fit", "mechanism", "one_removal",
                           "several_removals"]
    assert by_id["fit"]["status"] == "reproduced" and by_id["count"]["status"] == "not"
    assert by_id["mechanism"]["label"] == "Clock" and by_id["mechanism"]["threshold"]["label"] == "Clock"
    assert by_id["count"]["values"]["in_use"] == 2 and by_id["count"]["threshold"] == {"in_use_min": 3, "in_use_max": 12}


def test_construct_refuses_a_non_positive_scale(tmp_path):
    result = CliRunner().invoke(main, ["construct", "--p", "11", "--freqs", "2", "--out", str(tmp_path),
                                       "--scale", "0"])
    assert result.exit_code != 0 and "Invalid value for '--scale'" in result.output
    assert "Traceback" not in result.output


class _Curve:
    """A scorer whose keep-only loss falls smoothly as frequencies are kept: the model's own
    loss `full` is reached only with all `total` of them (as the GRU's is, above the bar)."""

    def __init__(self, full, total, accuracy=0.995):
        self.full, self.total, self.accuracy, self.p = full, total, accuracy, 2 * total + 1

    def __call__(self, removed):
        return self.keep(sorted(set(range(1, self.total + 1)) - set(removed)))

    def keep(self, kept):
        n = len(kept)
        return {"loss": self.full * (1 + 3 * (self.total - n) / self.total),
                "accuracy": self.accuracy - 0.002 * (self.total - n)}


def test_the_functional_rule_is_relative_to_a_model_above_its_bar():
    order = list(range(1, 16))
    above = _Curve(full=0.0105, total=15)          # the GRU's loss, above ln(1/0.99) = 0.01005
    # keep-only loss at most 2x the model's: 1 + 3 (15 - n) / 15 <= 2 from n = 10, and accuracy
    # within a point (0.002 per frequency left out) from n = 10: the count sits below the total
    assert keysets.functional_size(above, order, 0.99) == 10
    # a model that clears the bar is held to its own accuracy, as before: every frequency here
    below = _Curve(full=0.0005, total=15)
    assert keysets.functional_size(below, order, 0.99) == 15


def test_the_removal_claims_are_relative_to_the_models_own_accuracy():
    """A model at 90% accuracy would fail an absolute 95% bar by construction; the bar is
    95% of the model's own accuracy."""
    report = lambda base, worst, control: {
        "baseline": {"accuracy": base},
        "single": [{"frequency": 3, "is_key": True, "accuracy": worst}, {"frequency": 4, "is_key": False, "accuracy": base}],
        "cumulative": [{"removed": [3], "accuracy": 0.05}], "control_non_key": [{"removed": [4], "accuracy": control}]}
    one, several = claims.ablation_claims(report(0.90, 0.88, 0.89))
    assert one.verdict == "reproduced" and "85.5%" in one.criterion
    assert several.verdict == "reproduced"
    one, several = claims.ablation_claims(report(1.0, 0.94, 0.94))
    assert one.verdict == "not" and several.verdict == "not"
