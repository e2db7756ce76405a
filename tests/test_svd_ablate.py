"""Low rank and ablation: the maths on random matrices, exact behaviour on a hand-built
model, and the svd / ablate / report commands."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from strategies import models
from tinymod.analysis import ablate, construct, svd
from tinymod.model import rnn
from tinymod.cli import main


@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_energy_shares_are_monotone_and_end_at_one(m, n, seed):
    M = np.random.default_rng(seed).standard_normal((m, n))
    s = np.linalg.svd(M, compute_uv=False)
    shares = svd.cumulative_energy(s)
    assert np.all(np.diff(shares) >= -1e-15) and shares[-1] == pytest.approx(1.0)
    r90 = svd.effective_rank(shares, 0.9)
    assert shares[r90 - 1] >= 0.9 - 1e-12 and (r90 == 1 or shares[r90 - 2] < 0.9)


def test_singular_values_agree_with_numpy():
    params = rnn.init_params(11, 6, 7, seed=2, dtype="float64")
    report = svd.measure_matrices(params, key=[1, 2])
    for name, (M, _) in svd.matrices(params).items():
        np.testing.assert_allclose(report[name]["singular_values"],
                                   np.linalg.svd(M, compute_uv=False), rtol=1e-12)
        assert report[name]["key_rank"] == 4


def test_top_singular_vectors_of_a_constructed_model_span_its_frequencies():
    """The planted frequencies have equal weight, so singular vectors may mix them: the
    top-4 subspace, not each vector, is the span of cos/sin of the planted frequencies."""
    params, _ = construct.build(13, [2, 5], phases=16, offsets=4)
    report = svd.measure_matrices(params, key=[2, 5])
    for name, (M, _) in svd.matrices(params).items():
        if name in ("E", "W_out", "E @ W_ih.T"):
            u = np.linalg.svd(M)[0][:, :4]
            np.testing.assert_allclose(u @ u.T, ablate.projector(13, [2, 5]), atol=1e-9)
            assert {v["frequency"] for v in report[name]["top_vectors"][:4]} <= {2, 5}
            assert report[name]["energy_share_key_rank"] == pytest.approx(1.0)


@given(models(), st.sets(st.integers(1, 3), max_size=3), st.sampled_from(ablate.SITES))
def test_removing_a_frequency_twice_is_removing_it_once(model, freqs, site):
    params, *_ = model
    p = params["E"].shape[0]
    freqs = [k for k in freqs if k <= p // 2]
    once = ablate.remove(params, freqs, site)
    twice = ablate.remove(once, freqs, site)
    for name in rnn.PARAM_NAMES:
        np.testing.assert_allclose(twice[name], once[name], atol=1e-12)


@given(models(max_t=2))
def test_removing_every_frequency_but_the_constant_leaves_a_constant_model(model):
    params, x, _, activation = model
    p = params["E"].shape[0]
    flat = ablate.remove(params, range(1, p // 2 + 1), "embedding")
    np.testing.assert_allclose(flat["E"], np.broadcast_to(flat["E"].mean(axis=0), flat["E"].shape),
                               atol=1e-12)
    logits, _ = rnn.forward(flat, x, activation)
    np.testing.assert_allclose(logits, np.broadcast_to(logits[0], logits.shape), atol=1e-9)


@pytest.fixture(scope="module")
def planted():
    p, freqs = 13, [2, 5]
    params, _ = construct.build(p, freqs, phases=16, offsets=8)
    return p, freqs, params, ablate.Evaluator(p)


def test_ablating_planted_and_other_frequencies(planted):
    p, freqs, params, evaluate = planted
    base = evaluate(params)
    assert base["accuracy"] == 1.0
    for k in range(1, p // 2 + 1):
        result = evaluate(ablate.remove(params, [k]))
        if k in freqs:
            assert result["loss"] > base["loss"] + 0.1, k              # it changes the model
        else:
            assert result["accuracy"] == base["accuracy"]              # untouched ...
            assert result["loss"] == pytest.approx(base["loss"], rel=1e-9, abs=1e-12)   # ... to rounding
    assert_no_information(params, ablate.remove(params, freqs), p)


def assert_no_information(before, after, p):
    """Chance: the logits no longer depend on the input (left: rounding, ~1e-16), so the
    argmax is a coin toss among p near-equal logits."""
    from tinymod.model.data import all_tuples
    x = all_tuples(p, 2)
    spread = lambda params: np.ptp(rnn.forward(params, x)[0], axis=0).max()   # over inputs
    assert spread(after) < 1e-9 * spread(before)
    assert ablate.Evaluator(p)(after)["accuracy"] < 3 / p


def test_a_single_planted_frequency_is_needed():
    params, _ = construct.build(11, [3], phases=16, offsets=8)
    evaluate = ablate.Evaluator(11)
    assert evaluate(params)["accuracy"] == 1.0
    assert_no_information(params, ablate.remove(params, [3], "embedding"), 11)
    assert_no_information(params, ablate.remove(params, [3], "readout"), 11)


def test_cli_svd_ablate_report(tiny_run):
    runner = CliRunner()
    run = tiny_run(200)
    result = runner.invoke(main, ["svd", str(run)])
    assert result.exit_code == 0 and "rank 90%" in result.output, result.output
    svd = json.loads((run / "svd.json").read_text())["matrices"]
    for name in ("E", "W_ih", "W_hh", "W_out"):
        assert {"singular_values", "energy_share_top", "rank_90", "rank_99"} <= set(svd[name])
    result = runner.invoke(main, ["ablate", str(run), "--site", "embedding", "--seeds", "2"])
    assert result.exit_code == 0, result.output
    ab = json.loads((run / "ablation.json").read_text())
    assert ab["site"] == "embedding" and len(ab["single"]) == 5
    assert {"frequency", "accuracy", "loss"} <= set(ab["single"][0])
    assert len(ab["control_random_key_orders"]) == 2
    assert {"removed", "accuracy", "loss"} <= set(ab["cumulative"][0])
    result = runner.invoke(main, ["report", str(run)])
    assert result.exit_code == 0, result.output
    text = (run / "report.md").read_text()
    assert "| claim | paper | ours | verdict |" in text and "![curves.png](curves.png)" in text
    for figure in ("singular_values.png", "ablation_single.png", "ablation_cumulative.png", "clock.png"):
        assert (run / figure).is_file() and f"({figure})" in text


@pytest.mark.parametrize("args, message", [
    (["svd", "{tmp}/absent"], "no checkpoint at"),
    (["ablate", "{tmp}/bad.npz"], "truncated or corrupt"),
    (["ablate", "{tmp}/bad.npz", "--site", "middle"], "Invalid value for '--site'"),
    (["report", "{tmp}"], "holds no model.npz"),
])
def test_bad_inputs(tmp_path, args, message):
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    result = CliRunner().invoke(main, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
