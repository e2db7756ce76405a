"""Fits of named objects: how much of each stage of the model a few Fourier terms explain.

Letters: p residues, T tokens, N = p**T tuples, H hidden units, S a frequency set,
w_k = 2 pi k / p, s_t = x_1 + ... + x_t the running sum, h_t^pre = E[x_t] W_ih^T +
h_{t-1} W_hh^T + b_h the pre-activation at step t (h_0 = 0), h_t = act(h_t^pre).

Each object Y (rows over the tuples, one column per unit) is fitted by least squares on a
constant and cos/sin(w_k angle) for k in S and the object's angles (FIT_RULE), and scored by
  fvu             pooled: sum of squared residuals / sum of squared deviations from each
                  unit's mean (the fraction of variance unexplained, 1 - R^2);
  fvu_median_unit the median of the per-unit FVUs, units with zero variance left out and
                  counted in `units_constant`;
  relative_l2     the square root of the pooled FVU: ||Y - fit|| / ||Y - mean||.
"""
import numpy as np

from tinymod.analysis import fourier
from tinymod.model import gated
from tinymod.model.data import all_tuples, grid_sums


WELL_EXPLAINED = 0.85     # a unit is well explained when this much of its variance is
HARMONIC = {"relu": 2, "tanh": 3}   # the activation's own harmonic of w_k
FIT_RULE = {
    "T = 2": ("h1_preactivation: E W_ih^T + b_h over a, on cos/sin(w_k a); h2_preactivation: over "
              "the (a, b) grid, on cos/sin(w_k a) and cos/sin(w_k b); h2: the activation, on "
              "cos/sin of w_k and of m w_k times a, b, a+b and a-b (m = 2 for relu, 3 for tanh: the "
              "activation's own harmonic); logits: each answer's table, on cos/sin(w_k (a+b))"),
    "T > 2": ("h1_preactivation .. hT_preactivation, one per step t: on cos/sin of w_k times each token "
              "seen x_1..x_t and times the running sum s_t; hT: the same angles at w_k and m w_k; logits: each "
              "answer's table, on cos/sin(w_k s_T)"),
    "gated": ("r_input, z_input, n_input (GRU) or i_input .. o_input (LSTM), one per gate: its input "
              "projection E W_ih^T + b_ih (that gate's block) over a, on cos/sin(w_k a); hT: the "
              "hidden state, on cos/sin of w_k and 2 w_k times each token and the sum (T = 2: a, b, "
              "a+b and a-b); logits as above. A gate's pre-activation after step 1 also holds "
              "h_{t-1} W_hh^T, a product of gates, so it is not fitted"),
    "all": "every fit also has a constant; k runs over the set the table is named for",
}
GATED_HARMONIC = 2        # a gate's output multiplies two waves: the second harmonic appears
MEASURES = ("fvu: pooled fraction of variance unexplained (each unit centred on its mean); "
            "fvu_median_unit: median over units with non-zero variance; relative_l2 = sqrt(fvu)")


def fvu(y, fit, axis=None):
    """Fraction of variance unexplained, 1 - R^2: the residual sum of squares over the sum
    of squares of y centred on its mean over `axis` (every axis when None)."""
    centred = y - y.mean(axis=axis, keepdims=True)
    total = float(np.sum(centred ** 2))
    return float(np.sum((y - fit) ** 2) / total) if total > 0 else float("nan")   # nothing to explain


def relative_error(y, fit):
    """Relative L2 error ||y - fit|| / ||y|| (not centred); NaN when y is all zero."""
    norm = float(np.linalg.norm(y))
    return float(np.linalg.norm(y - fit) / norm) if norm > 0 else float("nan")


def fit_logits(logits, key):
    """Fit logits over (x_1, ..., x_T, c), a grid (p,)*T + (p,), by a function of c alone plus
    sum_k alpha_k cos(w_k (s - c)) + beta_k sin(w_k (s - c)) over the key frequencies, with
    s = x_1 + ... + x_T (for T = 2: a + b - c).

    Softmax ignores a constant per tuple, so each tuple's row is centred first. The
    features are orthogonal over the full grid, so the least-squares fit is a sum of
    projections. Returns (relative error ||L - fit|| / ||L||, accuracy of the fit, fit).
    The centred L has mean zero, so its FVU is that error squared.
    """
    p, T = logits.shape[-1], logits.ndim - 1
    L = logits.reshape(-1, p)
    L = L - L.mean(axis=1, keepdims=True)                          # (N, p)
    sums = grid_sums(T, p)                                         # (N,)
    fit = np.broadcast_to(L.mean(axis=0), L.shape).copy()          # the c-only part
    s = (sums[:, None] - np.arange(p)[None, :]) % p                # (N, p) s - c
    G = np.bincount(s.ravel(), weights=(L - fit).ravel(), minlength=p)   # sums per s - c
    n = np.arange(p)
    for k in key:
        w = 2 * np.pi * k / p
        for f in (np.cos, np.sin):
            wave = f(w * n)                                        # (p,) over s - c
            norm = np.dot(wave, wave) * L.shape[0]
            if norm > 1e-9:
                fit += (np.dot(G, wave) / norm) * wave[s]
    accuracy = float(np.mean(np.argmax(fit, axis=1) == sums))
    return relative_error(L, fit), accuracy, fit.reshape(logits.shape)


FIT_MEASURES = (
    "relative_error = ||y - fit|| / ||y||; fvu (fraction of variance unexplained, 1 - R^2) = "
    "||y - fit||^2 / ||y - mean(y)||^2. Logits are centred per (a, b) row (softmax ignores a "
    "row constant), so their mean is 0 and logits_fvu = logits_relative_error^2. The hidden "
    "state is centred per unit over (a, b); a unit is well explained when its own R^2 >= "
    "well_explained_r2.")


def fit_hidden(hidden, key):
    """Least-squares fit of the hidden state, a grid (p,)*T + (H,), on a constant and, for
    each key frequency, cos/sin of w_k times each token and times their sum; for T = 2 also
    w_k (a - b) (a relu of a sum of cosines makes both the sum and the difference terms).

    Returns the relative L2 error ||h - fit|| / ||h||, the FVU with each unit centred on
    its mean over (a, b), each unit's own R^2, and the share of live units (non-zero
    variance) with R^2 >= WELL_EXPLAINED."""
    p, T, H = hidden.shape[0], hidden.ndim - 1, hidden.shape[-1]
    tokens = all_tuples(p, T)                                      # (N, T)
    angles = list(tokens.T) + [tokens.sum(axis=1)]                 # each token, and the sum
    if T == 2:
        angles.append(tokens[:, 0] - tokens[:, 1])                 # a - b
    Y = hidden.reshape(-1, H)
    fit, residual, variance, alive = _least_squares(Y, fourier.design(angles, key, p))
    r2 = np.where(alive, 1 - residual / np.where(alive, variance, 1.0), 0.0)
    well = int(np.sum(alive & (r2 >= WELL_EXPLAINED)))
    return {"relative_error": relative_error(Y, fit), "fvu": fvu(Y, fit, axis=0),
            "unit_r2": r2.tolist(), "units_alive": int(alive.sum()), "units_well_explained": well,
            "share_well_explained": well / max(int(alive.sum()), 1)}


def _least_squares(Y, X):
    """The least-squares fit of every column of Y (N, U) on X (N, F), each column's residual
    and centred sums of squares (U,), and which columns vary at all (live)."""
    coef, *_ = np.linalg.lstsq(X, Y, rcond=None)
    fit = X @ coef
    residual = np.sum((Y - fit) ** 2, axis=0)                       # (U,)
    variance = np.sum((Y - Y.mean(axis=0)) ** 2, axis=0)            # (U,) centred per unit
    live = variance > 1e-12 * max(float(variance.max()), 1e-300)
    return fit, residual, variance, live


def score(Y, X):
    """Least-squares fit of every column of Y (N, U) on X (N, F): FVU pooled and per unit."""
    _, residual, variance, live = _least_squares(Y, X)
    total = float(variance[live].sum())
    pooled = float(residual[live].sum() / total) if total > 0 else float("nan")
    unit = residual[live] / variance[live]
    return {"fvu": pooled, "fvu_median_unit": float(np.median(unit)) if unit.size else float("nan"),
            "relative_l2": float(np.sqrt(pooled)), "units": int(Y.shape[1]),
            "units_constant": int((~live).sum()), "unit_r2": np.where(live, 1 - residual / np.where(live, variance, 1), np.nan)}


def gated_objects(tables):
    """The gated cell's objects (FIT_RULE "gated"): each gate's input projection over a (the
    traced `gi_1`, one row per first token), and h_T over the tuples."""
    tokens, cell, hidden = tables["tokens"], tables["cell"], tables["hidden"]
    (N, T), H, p = tokens.shape, hidden.shape[-1], hidden.shape[0]
    first = tables["trace"]["gi_1"][::N // p]          # (p, G*H): the tuples are in order, x_1 slowest
    a = tokens[::N // p, 0]
    objects = {f"{g}_input": (first[:, i * H:(i + 1) * H], [a], (1,))
               for i, g in enumerate(gated.GATES[cell])}
    angles = [*tokens.T, tokens.sum(axis=1)] + ([tokens[:, 0] - tokens[:, 1]] if T == 2 else [])
    objects[f"h{T}"] = (hidden.reshape(-1, H), angles, (1, GATED_HARMONIC))
    return objects


def named_objects(tables, activation):
    """{name: (Y (N, units), angles, multiples)} for FIT_RULE at this T and cell, from the
    model's tables (tinymod.analysis.tabulate.model_tables: its traced forward)."""
    logits, tokens = tables["logits"], tables["tokens"]
    p, seq_len = logits.shape[-1], tokens.shape[1]
    if tables["cell"] != "rnn":
        return {**gated_objects(tables), "logits": (logits.reshape(-1, p), [grid_sums(seq_len, p)], (1,))}
    pre, hs = tables["preactivations"], tables["hs"]
    harmonic = (1, HARMONIC[activation])
    sums = lambda t: tokens[:, :t].sum(axis=1)
    if seq_len == 2:
        a, b = tokens.T
        objects = {"h1_preactivation": (pre[0][::p], [a[::p]], (1,)),     # one row per a
                   "h2_preactivation": (pre[1], [a, b], (1,)),
                   "h2": (hs[1], [a, b, a + b, a - b], harmonic)}
    else:
        objects = {f"h{t}_preactivation": (pre[t - 1], [*tokens[:, :t].T, sums(t)], (1,))
                   for t in range(1, seq_len + 1)}
        objects[f"h{seq_len}"] = (hs[-1], [*tokens.T, sums(seq_len)], harmonic)
    objects["logits"] = (logits.reshape(-1, p), [sums(seq_len)], (1,))
    return objects


def fit_set(objects, freqs, p):
    """The fits of every named object at the frequency set `freqs`; None for an empty set."""
    if not freqs:
        return None
    out = {}
    for name, (Y, angles, multiples) in objects.items():
        result = score(Y, fourier.design(angles, freqs, p, multiples))
        r2 = result.pop("unit_r2")
        if name.startswith("h") and not name.endswith("preactivation"):
            well = np.nan_to_num(r2, nan=-1) >= WELL_EXPLAINED
            result["share_well_explained_ours"] = float(well.sum() / max(result["units"] - result["units_constant"], 1))
        out[name] = result
    return out


def nanda_share(hidden):
    """Nanda et al.'s share of well-explained units (T = 2): the unit's single strongest
    frequency (its (k, 0), (0, k) and (k, k) terms) explains >= WELL_EXPLAINED of its variance."""
    dominant, explained = fourier.neuron_frequencies(hidden)
    live = dominant > 0
    return float(np.sum(explained[live] >= WELL_EXPLAINED) / max(int(live.sum()), 1))


def fit_named_objects(tables, activation, sets):
    """fourier.json's `fits`: per named set ({name: freqs}), the named objects' fits, from the
    model's tables (tinymod.analysis.tabulate.model_tables)."""
    hidden, p, seq_len = tables["hidden"], tables["logits"].shape[-1], tables["tokens"].shape[1]
    objects = named_objects(tables, activation)
    applies = "gated" if tables["cell"] != "rnn" else "T = 2" if seq_len == 2 else "T > 2"
    out = {"rule": FIT_RULE, "applies": applies, "measures": MEASURES, "well_explained": WELL_EXPLAINED,
           "share_well_explained_nanda": nanda_share(hidden) if seq_len == 2 else None,
           "share_rules": {
               "nanda": f"T = 2 only: a unit's single strongest frequency (its a, b and a±b terms) "
                        f"explains at least {WELL_EXPLAINED} of its variance; independent of the set",
               "ours": f"the unit's R^2 in the h{seq_len} fit at the set is at least {WELL_EXPLAINED}"}}
    for name, freqs in sets.items():
        out[name] = fit_set(objects, freqs, p)
    return out
