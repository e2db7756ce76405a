"""The course's helpers: the shared trained model and the backward grader."""
import numpy as np
import pytest

from tinymod import course
from tinymod.model import rnn
from tinymod.training import config, runs
from tinymod.errors import TinymodError

TINY = config.TrainConfig(p=7, frac=0.6, d_embed=8, d_hidden=8, lr=0.01, steps=20,
                          eval_every=5, checkpoint_every=10, snapshot_every=0)


def one_hot_backward(params, cache, dlogits):
    """An independent BPTT (scatter-add written as a one-hot matmul), as a student might."""
    x, hs, relu = cache
    p = params["E"].shape[0]
    g = {"W_out": dlogits.T @ hs[-1], "b_out": dlogits.sum(0)}
    g.update({k: np.zeros_like(params[k]) for k in ("E", "W_ih", "W_hh", "b_h")})
    dh = dlogits @ params["W_out"]
    for t in range(x.shape[1], 0, -1):
        dz = dh * (hs[t] > 0) if relu else dh * (1 - hs[t] ** 2)
        onehot = np.eye(p)[x[:, t - 1]]
        g["b_h"] += dz.sum(0)
        g["W_ih"] += dz.T @ (onehot @ params["E"])
        g["E"] += onehot.T @ (dz @ params["W_ih"])
        g["W_hh"] += dz.T @ hs[t - 1]
        dh = dz @ params["W_hh"]
    return g


def without(change):
    """one_hot_backward with one bug put in by `change(grads, params, cache, dlogits)`."""
    def backward(params, cache, dlogits):
        return change(one_hot_backward(params, cache, dlogits), params, cache, dlogits)
    return backward


def test_a_correct_backward_passes_and_reports_its_errors():
    grade = course.grade_backward(one_hot_backward)
    assert grade.passed and grade.cases == course.CASES and str(grade).startswith("PASS")
    assert set(grade.worst) == set(rnn.PARAM_NAMES)
    assert max(grade.worst.values()) < 1e-12


def overwrite_w_hh(g, params, cache, dlogits):
    x, hs, relu = cache                      # `=` in place of `+=`: only the first step's term
    dh = dlogits @ params["W_out"]
    for t in range(x.shape[1], 0, -1):
        dz = dh * (hs[t] > 0) if relu else dh * (1 - hs[t] ** 2)
        g["W_hh"] = dz.T @ hs[t - 1]
        dh = dz @ params["W_hh"]
    return g


def test_forgetting_to_accumulate_is_caught_at_the_first_case_with_two_steps():
    grade = course.grade_backward(without(overwrite_w_hh))     # case 1 has T = 1: cannot see it
    assert not grade.passed and grade.cases == 2
    assert grade.message.startswith("FAIL case 2: p=") and "T=2" in grade.message
    assert "dW_hh" in grade.message


@pytest.mark.parametrize("bug, says", [
    (lambda g, *_: {**g, "b_out": g["b_out"] * 2}, "db_out is off by"),
    (lambda g, *_: {**g, "W_ih": g["W_ih"] * (1 + 1e-6)}, "dW_ih is off by 1e-06"),
    (lambda g, *_: {**g, "W_out": g["W_out"][:, :-1]}, "dW_out has shape"),
    (lambda g, *_: {k: v for k, v in g.items() if k != "E"}, "no gradient for E"),
    (lambda g, *_: {**g, "b_h": g["b_h"] * np.nan}, "db_h is off by nan"),
    (lambda *_: 1 / 0, "backward raised ZeroDivisionError: division by zero"),
    (lambda *_: None, "no gradient for E, W_ih, W_hh, b_h, W_out, b_out"),
    (lambda g, *_: {**g, "W_hh": "zeros"}, "dW_hh is not an array of numbers"),
])
def test_each_kind_of_mistake_fails_with_a_message_that_names_it(bug, says):
    grade = course.grade_backward(without(bug))
    assert not grade.passed and grade.message.startswith("FAIL case ") and says in grade.message


def test_a_backward_without_the_activation_derivative_fails():
    def no_mask(params, cache, dlogits):
        x, hs, relu = cache
        return one_hot_backward(params, (x, hs, False), dlogits)    # tanh' even for relu
    grade = course.grade_backward(no_mask, activations=("relu",))
    assert not grade.passed and "relu" in grade.message


def test_a_backward_that_changes_its_inputs_is_graded_on_its_own_copy():
    def vandal(params, cache, dlogits):
        grads = one_hot_backward(params, cache, dlogits)
        for v in params.values():
            v[...] = np.nan
        dlogits[...] = 0
        return grads
    assert course.grade_backward(vandal).passed


def test_trained_trains_once_then_reuses_the_finished_run(tmp_path):
    out = tmp_path / "run"
    first = course.trained(TINY, out)
    made = (out / runs.MODEL).stat().st_mtime_ns
    again = course.trained(TINY, out)
    assert (out / runs.MODEL).stat().st_mtime_ns == made
    assert again == first
    other = course.trained(TINY.replace(steps=25), out)           # other settings: retrained
    assert other["step"] == 25 and (out / runs.MODEL).stat().st_mtime_ns != made


def test_trained_retrains_a_run_that_never_finished(tmp_path):
    out = tmp_path / "run"
    course.trained(TINY, out)
    (out / runs.MODEL).unlink()                    # as after an interrupted run
    assert course.trained(TINY, out)["step"] == 20 and (out / runs.MODEL).exists()


def test_trained_never_replaces_a_folder_that_holds_no_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(TinymodError, match="holds no tinymod run"):
        course.trained(TINY, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("activations", [("sigmoid",), (), ("relu", "gelu")])
def test_an_unknown_activation_is_refused(activations):
    with pytest.raises(TinymodError, match="activations must be relu and/or tanh"):
        course.grade_backward(one_hot_backward, activations=activations)
