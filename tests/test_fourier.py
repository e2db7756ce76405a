"""The Fourier identities the analysis rests on, as hypothesis properties, and the analysis
recovering exactly what a hand-built model has planted."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from tinymod.analysis import construct, fits, fourier, tabulate
from tinymod.cli import main

ps = st.integers(2, 40)


@given(ps)
def test_basis_is_orthonormal_and_complete(p):
    B = fourier.fourier_basis(p)
    np.testing.assert_allclose(B.matrix @ B.matrix.T, np.eye(p), atol=1e-12)   # orthonormal
    np.testing.assert_allclose(B.matrix.T @ B.matrix, np.eye(p), atol=1e-12)   # complete
    assert len(B.names) == p and B.names[0] == "const"
    assert sorted(set(B.freqs)) == list(range(p // 2 + 1))


@given(ps, st.integers(0, 2**32 - 1))
def test_parseval(p, seed):
    x = np.random.default_rng(seed).standard_normal((p, 3))
    assert fourier.spectrum(x).sum() == pytest.approx(np.sum(x**2), rel=1e-12)
    M = np.random.default_rng(seed).standard_normal((p, p, 2))
    assert fourier.spectrum_2d(M).sum() == pytest.approx(np.sum(M**2), rel=1e-12)


@given(ps.filter(lambda p: p >= 3), st.integers(0, 2**32 - 1), st.integers(-50, 50))
def test_shift_rotates_each_cos_sin_pair(p, seed, s):
    """x'(n) = x(n - s) turns each frequency's (cos, sin) coefficients by the angle w_k s."""
    x = np.random.default_rng(seed).standard_normal(p)
    B = fourier.fourier_basis(p)
    c, c_shifted = fourier.project(x), fourier.project(np.roll(x, s))
    for k in range(1, (p - 1) // 2 + 1):
        i = B.names.index(f"cos {k}")
        w = 2 * np.pi * k * s / p
        rotation = np.array([[np.cos(w), -np.sin(w)], [np.sin(w), np.cos(w)]])
        np.testing.assert_allclose(c_shifted[i:i + 2], rotation @ c[i:i + 2], atol=1e-10)
    assert c_shifted[0] == pytest.approx(c[0])
    np.testing.assert_allclose(fourier.spectrum(np.roll(x, s)), fourier.spectrum(x), atol=1e-10)


@given(ps.filter(lambda p: p >= 3), st.data())
def test_product_to_sum_on_the_basis(p, data):
    """cos(w(a+b)) = cos(wa)cos(wb) - sin(wa)sin(wb): its 2-D coefficients sit at exactly
    (cos k, cos k) and (sin k, sin k), with weights p/2 and -p/2."""
    k = data.draw(st.integers(1, (p - 1) // 2))
    n = np.arange(p)
    table = np.cos(2 * np.pi * k * np.add.outer(n, n) / p)
    coeffs = fourier.project_2d(table)
    B = fourier.fourier_basis(p)
    ci, si = B.names.index(f"cos {k}"), B.names.index(f"sin {k}")
    expected = np.zeros((p, p))
    expected[ci, ci], expected[si, si] = p / 2, -p / 2
    np.testing.assert_allclose(coeffs, expected, atol=1e-9)


@given(ps, st.integers(0, 2**32 - 1))
def test_projection_agrees_with_numpy_fft(p, seed):
    x = np.random.default_rng(seed).standard_normal(p)
    X = np.fft.rfft(x)
    c = fourier.project(x)
    B = fourier.fourier_basis(p)
    assert c[0] == pytest.approx(X[0].real / np.sqrt(p))
    for k in range(1, p // 2 + 1):
        if 2 * k == p:
            assert c[B.names.index(f"cos {k}")] == pytest.approx(X[k].real / np.sqrt(p), abs=1e-10)
        else:
            assert c[B.names.index(f"cos {k}")] == pytest.approx(np.sqrt(2 / p) * X[k].real, abs=1e-10)
            assert c[B.names.index(f"sin {k}")] == pytest.approx(-np.sqrt(2 / p) * X[k].imag, abs=1e-10)
    energy = np.abs(X) ** 2 * np.where((np.arange(len(X)) == 0) | (2 * np.arange(len(X)) == p), 1, 2) / p
    np.testing.assert_allclose(fourier.spectrum(x), energy, atol=1e-10)


@st.composite
def planted(draw):
    p = draw(st.sampled_from([7, 11, 13, 17, 19, 23, 29, 31]))
    freqs = draw(st.sets(st.integers(1, (p - 1) // 2), min_size=1, max_size=3))
    return p, sorted(freqs)


@given(planted())
def test_constructed_model_is_perfect_and_recovered_exactly(case):
    p, freqs = case
    params, accuracy = construct.build(p, freqs, phases=16, offsets=8)
    assert accuracy == 1.0
    report = tabulate.fourier_picture(params)
    assert report["key_frequencies"] == freqs
    assert report["accuracy_all_pairs"] == 1.0
    for name in ("E", "U", "W_out", "logits"):
        assert report["energy_share"][name] == pytest.approx(1.0, abs=1e-9), name
    assert report["fit"]["logits_relative_error"] < 0.025        # measured ~0.02 at 16 x 8
    assert report["fit"]["logits_fit_accuracy"] == 1.0
    counts = report["neurons"]["count_per_frequency"]
    assert sum(counts[k] for k in freqs) == sum(counts[1:])      # every live unit is planted


def test_more_phases_and_offsets_make_the_fit_exact_in_the_limit():
    errors = [tabulate.fourier_picture(construct.build(13, [2, 5], m, r)[0])["fit"]["logits_relative_error"]
              for m, r in ((8, 4), (16, 8), (32, 16))]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 5e-3


def test_fit_of_a_pure_fourier_table_is_exact():
    p, key = 11, [3]
    a, b, c = np.ix_(np.arange(p), np.arange(p), np.arange(p))
    logits = 2 * np.cos(2 * np.pi * 3 * (a + b - c) / p) + 0.1 * np.sin(2 * np.pi * c / p) + a
    error, accuracy, _ = fits.fit_logits(logits, key)
    assert error < 1e-12 and accuracy == 1.0
    assert fits.fit_logits(logits, [4])[0] > 0.9                  # the wrong frequency


def test_construct_refuses_bad_frequencies():
    from tinymod.errors import TinymodError
    with pytest.raises(TinymodError, match="must lie in 1..5"):
        construct.build(11, [6])
    with pytest.raises(TinymodError, match="at least one frequency"):
        construct.build(11, [])


def test_cli_construct_then_fourier(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["construct", "--p", "13", "--freqs", "2,5", "--out", str(tmp_path),
                                  "--phases", "16", "--offsets", "8"])
    assert result.exit_code == 0, result.output
    again = runner.invoke(main, ["construct", "--p", "13", "--freqs", "2", "--out", str(tmp_path)])
    assert again.exit_code == 1 and "exists; pass --overwrite" in again.output
    result = runner.invoke(main, ["fourier", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "spectral   2: 2 5" in result.output
    assert "in use     0: none" in result.output          # scale 1: no removal doubles loss 2.3
    report = json.loads((tmp_path / "fourier.json").read_text())
    # loss 2.3 is above ln(1/0.99): the functional rule is relative, and one planted frequency does
    assert len(report["functional_key_frequencies"]) == 1 and set(report["functional_key_frequencies"]) <= {2, 5}
    assert report["key_frequencies"] == [2, 5] and report["p"] == 13
    for name in ("E", "U", "W_out", "hidden", "logits"):
        assert len(report["spectra"][name]) == 13 // 2 + 1
    assert {"key_rule", "energy_share", "fits", "key_curve", "neurons", "clock"} <= set(report)
    for figure in ("fourier_spectra", "hidden_spectrum_2d", "neurons_per_frequency", "clock", "key_curve"):
        assert (tmp_path / f"{figure}.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_fourier_on_a_trained_tiny_run(tmp_path, tiny_run):
    runner = CliRunner()
    run = tiny_run(60)
    result = runner.invoke(main, ["fourier", str(run / "checkpoints" / "step_0000060.npz"),
                                  "--out", str(tmp_path / "analysis")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "analysis" / "fourier.json").read_text())
    assert report["p"] == 11 and all(1 <= k <= 5 for k in report["key_frequencies"])
    assert len(report["neurons"]["dominant_frequency"]) == 16


@pytest.mark.parametrize("args, message", [
    (["fourier", "{tmp}/absent.npz"], "no checkpoint at"),
    (["fourier", "{tmp}"], "holds no model.npz"),
    (["fourier", "{tmp}/bad.npz"], "truncated or corrupt"),
    (["fourier", "{tmp}/bad.npz", "--threshold", "2"], "Invalid value for '--threshold'"),
    (["construct", "--p", "11", "--freqs", "a,b", "--out", "{tmp}/c"], "Invalid value for '--freqs': must be comma-separated integers"),
    (["construct", "--p", "11", "--freqs", ",", "--out", "{tmp}/c"], "Invalid value for '--freqs': names no integer"),
    (["construct", "--p", "11", "--freqs", "9", "--out", "{tmp}/c"], "must lie in 1..5"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, args, message):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really")
    result = CliRunner().invoke(main, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output
