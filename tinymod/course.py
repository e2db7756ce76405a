"""Helpers for the course in lectures/: a shared trained model, and a grader for a
student's own backward pass.

`trained` is `train.run` that reuses a run folder already holding a finished run of the
same settings, so the lectures that study one model train it once per course (training is
deterministic, so reusing and retraining give the same bits). `grade_backward` checks a
backward pass written by hand against `reference.backward_plain` on random models and
batches drawn in float64.
"""
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tinymod.model import reference, rnn
from tinymod.training import checkpoint, runs, train
from tinymod.training.config import FIELDS, TrainConfig, coerce
from tinymod.errors import TinymodError
from tinymod.model.kernels import softmax_xent


def trained(config, out):
    """The summary `train.run(config, out)` returns; trains only when `out` does not already
    hold a finished run made with exactly `config`. Another run there is replaced; a folder
    holding no run is refused, as by `tinymod train`."""
    out = Path(out)
    try:
        meta = checkpoint.load(out / runs.MODEL)[1]       # written only when a run finishes
        finished = train.read_run_config(out) == config == TrainConfig(
            **coerce({k: v for k, v in meta.items() if k in FIELDS}))
    except (TinymodError, OSError):
        finished = False
    if not finished:
        return train.run(config, out, overwrite=out.exists())
    rows = runs.read_metrics(out / runs.METRICS)
    return train.summarize(rows, out, "steps" if meta["step"] == config.steps else "stop_at")


# --- grading a hand-written backward ------------------------------------------------------

CASES = 12          # random (shape, activation) cases a backward must pass
TOLERANCE = 1e-9    # worst |yours - reference| / (|reference|_max + 1e-12), per parameter


class Grade(NamedTuple):
    passed: bool
    cases: int                  # cases tried (stops at the first failure)
    worst: dict                 # parameter -> worst relative error over the cases tried
    message: str

    def __str__(self):
        return self.message


def _cases(seed, activations):
    rng = np.random.default_rng(seed)
    for i in range(CASES):
        p, D, H = (int(n) for n in rng.integers(2, 7, 3))
        B, T = int(rng.integers(1, 9)), 1 + i % 4
        params = rnn.init_params(p, D, H, int(rng.integers(1 << 30)), "float64")
        params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in params.items()}
        x = rng.integers(0, p, (B, T))
        yield params, x, x.sum(axis=1) % p, activations[i % len(activations)]


def grade_backward(backward, activations=("relu", "tanh"), seed=0):
    """Grade `backward(params, cache, dlogits) -> grads`, where cache = (x, hs, relu) is what
    `reference.forward_plain` returns (hs[t] = h_t, hs[0] = 0) and dlogits = dL/dlogits.

    Draws CASES random models and batches (T = 1..4, each activation in turn) and compares
    every parameter's gradient with `reference.backward_plain`. Returns a Grade whose
    message says what passed, or which parameter first went wrong and in what case."""
    unknown = [a for a in activations if a not in ("relu", "tanh")]
    if unknown or not activations:
        raise TinymodError(f"activations must be relu and/or tanh, got {list(activations)!r}")
    worst = dict.fromkeys(rnn.PARAM_NAMES, 0.0)
    for n, (params, x, y, activation) in enumerate(_cases(seed, activations), 1):
        logits, cache = reference.forward_plain(params, x, activation)
        dlogits = softmax_xent(logits, y)[1]
        expected = reference.backward_plain(params, cache, dlogits)
        case = f"case {n}: p={params['E'].shape[0]}, B={x.shape[0]}, T={x.shape[1]}, {activation}"
        frozen = ({k: v.copy() for k, v in params.items()},
                  (x.copy(), [h.copy() for h in cache[1]], cache[2]), dlogits.copy())
        try:
            got = backward(*frozen)
        except Exception as e:               # the student's code: report, never crash the grader
            return Grade(False, n, worst, f"FAIL {case}: backward raised {type(e).__name__}: {e}")
        missing = [k for k in rnn.PARAM_NAMES if not isinstance(got, dict) or k not in got]
        if missing:
            return Grade(False, n, worst, f"FAIL {case}: no gradient for {', '.join(missing)}")
        for name in rnn.PARAM_NAMES:
            try:
                g = np.asarray(got[name], dtype=float)
            except (TypeError, ValueError):
                return Grade(False, n, worst, f"FAIL {case}: d{name} is not an array of numbers")
            if g.shape != expected[name].shape:
                return Grade(False, n, worst, f"FAIL {case}: d{name} has shape {g.shape}, "
                                              f"expected {expected[name].shape}")
            scale = float(np.abs(expected[name]).max()) + 1e-12
            error = float(np.abs(g - expected[name]).max()) / scale
            worst[name] = max(worst[name], error)
            if not error <= TOLERANCE:
                return Grade(False, n, worst, f"FAIL {case}: d{name} is off by {error:.2g} "
                                              f"(relative to its largest entry)")
    return Grade(True, CASES, worst, f"PASS: all {CASES} cases (T = 1..4, "
                                     f"{' and '.join(activations)}) agree to {TOLERANCE:g}")
