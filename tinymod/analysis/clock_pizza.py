"""Clock or Pizza: which algorithm the logits run (Zhong, Liu, Tegmark and Andreas 2023,
"The Clock and the Pizza", arXiv 2306.17844).

Both algorithms are sparse in Fourier space and pass Nanda's restricted and excluded
losses. The Clock (Fourier multiplication) scores answer c by |C_k| cos(w_k (s - c) - phi_k),
s = x_1 + ... + x_T, the same for every tuple with that sum; the Pizza's amplitude and phase
also depend on the tokens' differences (|cos(w_k (a - b) / 2)| for two tokens).

Letters: p residues, T tokens, N = p**T tuples, K = floor(p/2), w_k = 2 pi k / p.

Per frequency k, Y_k(x) = sum_c L(x, c) e^{i w_k c} is the logits' frequency-k component along
the answer axis, a complex function of the tuple x. Its T-dimensional DFT splits its variance
(the constant left out) into orthogonal parts, by the frequency vector u in Z_p^T:
  clock       u = (k, .., k): Y_k = C_k e^{i w_k s}, the Clock form (one complex constant);
  pizza       u = k (1, .., 1) + j (e_i - e_l), j != 0: the amplitude and phase depend on a
              pairwise difference x_i - x_l (T = 2: the p - 1 other terms of C_k(a - b) e^{i w_k s});
  difference  u = j (e_i - e_l), j != 0: terms in one pairwise difference alone;
  one_token   u with one non-zero entry (not above): terms in one token alone;
  other       everything else.
Least squares on orthogonal waves is a sum of energies, so the Clock form's FVU is
1 - clock, the difference-dependent form's FVU is 1 - clock - pizza, and the pizza excess
(the difference of the two FVUs) is the `pizza` share. If the Clock form's residual were
noise spread over all N - 1 terms, the excess would be FVU_clock * n_pizza / (N - 1) by
chance (n_pizza = p - 1 for T = 2): `chance`.

Zhong et al.'s two measures, from their definitions:
  distance irrelevance    the correct logit L(x, s mod p) tabulated by s and the tokens'
                          differences (x_2 - x_1, .., x_T - x_1): the mean over the differences
                          of its std over s, over its overall std (their code's definition:
                          near 1 for a Clock, small for a Pizza);
  gradient symmetricity   for 100 triples (x, c) drawn with seed 42, the cosine between the
                          gradients of logit c with respect to the tokens' embedding rows
                          E[x_1], E[x_2] (the mean over pairs of positions for T > 2). In an RNN
                          the tokens meet additively in the step-2 pre-activation, where the
                          two gradients are the same vector by construction; at the embedding
                          rows the first token's gradient has passed W_ih, the activation and
                          W_hh, the second's W_ih alone.
"""
import itertools
import math

import numpy as np

from tinymod.analysis.records import ClockPizza, ClockPizzaSet
from tinymod.model import rnn
from tinymod.model.backend import to_numpy
from tinymod.model.data import all_tuples, grid_sums

TERMS = ("clock", "pizza", "difference", "one_token", "other")
# The label's thresholds, calibrated on the hand-built Clock, Pizza and their mixes and on
# untrained models (tests/test_clock_pizza.py), never on trained runs.
SET_SHARE = 0.90         # the set holds at least this share of the logit variance
CLOCK_KAPPA = 0.90       # kappa = 1 - the share-weighted Clock-form FVU, at least this
CLOCK_EXCESS = 0.01      # net pizza excess (above chance), share-weighted, at most this for a Clock
PIZZA_EXCESS = 0.10      # ... at least this for a Pizza
BIG = 0.05               # a frequency holding this share of the set's variance ...
BIG_EXCESS = 0.02        # ... has a net pizza excess of at most this in a Clock
TRIPLES, TRIPLE_SEED = 100, 42
MEASURES = (
    "per frequency k, Y_k(x) = sum_c L(x, c) e^{i w_k c}, split by its T-D DFT into clock (u = k(1..1)), "
    "pizza (u = k(1..1) + j(e_i - e_l), j != 0), difference (u = j(e_i - e_l)), one_token and other "
    "terms, as shares of its variance; clock_fvu = 1 - clock (the Clock form C_k e^{i w_k s}); "
    "free_fvu = clock_fvu - pizza (amplitude and phase free to depend on a pairwise difference); "
    "pizza_excess = clock_fvu - free_fvu; chance = clock_fvu * (number of pizza terms) / (p^T - 1). "
    "distance_irrelevance: mean over the tokens' differences of the correct logit's std over s, over "
    "its overall std; gradient_symmetricity: mean cosine of d logit_c / d E[x_i] between positions, "
    f"over {TRIPLES} (x, c) drawn with seed {TRIPLE_SEED}")

LABEL_RULE = (
    f"at a frequency set, each frequency weighted by its share of the set's logit variance: kappa = "
    f"1 - the weighted Clock-form FVU, phi = 1 - the weighted difference-dependent form's FVU, excess "
    f"= the weighted pizza excess minus its chance level. Pizza when excess >= {PIZZA_EXCESS}; Clock "
    f"when the set holds >= {SET_SHARE:.0%} of the logit variance, kappa >= {CLOCK_KAPPA}, excess <= "
    f"{CLOCK_EXCESS} and no frequency holding >= {BIG:.0%} of the set's variance has an excess above "
    f"its chance level of more than {BIG_EXCESS}; mixed when the set's share and phi clear the same "
    f"bars but the Clock's do not; neither otherwise (no form explains the logits)")


def term_masks(p, T, k):
    """{term: boolean (p,)*T mask over frequency vectors u} for frequency k (TERMS)."""
    u = np.indices((p,) * T).reshape(T, -1).T                       # (N, T) every u
    flat = {name: np.zeros(len(u), bool) for name in TERMS}
    index = lambda vectors: np.ravel_multi_index(np.asarray(vectors).T % p, (p,) * T)
    flat["clock"][index([[k] * T])] = True
    pairs = [(np.eye(T, dtype=int)[i] - np.eye(T, dtype=int)[l]) for i, l in itertools.combinations(range(T), 2)]
    for d in pairs:
        for j in range(1, p):
            flat["pizza"][index([k + j * d])] = True
            flat["difference"][index([j * d])] = True
    flat["pizza"] &= ~flat["clock"]
    flat["difference"] &= ~(flat["clock"] | flat["pizza"])
    taken = flat["clock"] | flat["pizza"] | flat["difference"]
    flat["one_token"] = (np.count_nonzero(u % p, axis=1) == 1) & ~taken
    constant = ~np.any(u, axis=1)
    flat["other"] = ~(taken | flat["one_token"] | constant)
    return {name: m.reshape((p,) * T) for name, m in flat.items()}


def frequency_fits(logits):
    """Per frequency k = 1..K: its variance along the answer axis and its share of the
    logits' variance, the split of Y_k into TERMS (shares of its variance), the Clock-form
    FVU, the difference-dependent form's FVU, the pizza excess and its chance level.
    `logits`: a grid (p,)*T + (p,)."""
    p, T = logits.shape[-1], logits.ndim - 1
    F = np.fft.fft(np.asarray(logits, np.float64), axis=-1)         # (p,)*T + (p,)
    rows, total = [], 0.0
    for k in range(1, p // 2 + 1):
        Z = np.fft.fftn(np.conj(F[..., k]))                          # (p,)*T over u
        energy = np.abs(Z) ** 2
        energy[(0,) * T] = 0.0                                       # the mean: not variance
        variance = float(energy.sum())
        masks = term_masks(p, T, k)
        split = {name: float(energy[m].sum() / variance) if variance > 0 else math.nan
                 for name, m in masks.items()}
        clock_fvu = 1.0 - split["clock"]
        weight = 1 if 2 * k == p else 2                              # k and -k, once at Nyquist
        total += weight * variance
        rows.append({"frequency": k, "variance": weight * variance, "terms": split,
                     "clock_fvu": clock_fvu, "free_fvu": clock_fvu - split["pizza"],
                     "pizza_excess": split["pizza"],
                     "chance": clock_fvu * int(masks["pizza"].sum()) / (p ** T - 1)})
    for row in rows:
        row["variance_share"] = row["variance"] / total if total > 0 else math.nan
    return rows


def judge(rows, freqs) -> ClockPizzaSet:
    """The share-weighted measures at the set `freqs` and LABEL_RULE's label."""
    chosen = [r for r in rows if r["frequency"] in set(freqs)]
    variance = sum(r["variance"] for r in chosen)
    share = sum(r["variance_share"] for r in chosen)
    if not chosen or not variance > 0:
        return {"frequencies": sorted(int(k) for k in freqs), "variance_share": 0.0, "kappa": math.nan,
                "phi": math.nan, "pizza_excess": math.nan, "chance": math.nan, "net_excess": math.nan,
                "worst_big_excess": math.nan, "label": "neither"}
    weights = {r["frequency"]: r["variance"] / variance for r in chosen}
    mean = lambda field: float(sum(weights[r["frequency"]] * r[field] for r in chosen))
    kappa, phi = 1 - mean("clock_fvu"), 1 - mean("free_fvu")
    excess, chance = mean("pizza_excess"), mean("chance")
    net = excess - chance
    big = [r["pizza_excess"] - r["chance"] for r in chosen if weights[r["frequency"]] >= BIG]
    worst = max(big) if big else 0.0
    if net >= PIZZA_EXCESS:
        label = "Pizza"
    elif share >= SET_SHARE and kappa >= CLOCK_KAPPA and net <= CLOCK_EXCESS and worst <= BIG_EXCESS:
        label = "Clock"
    elif share >= SET_SHARE and phi >= CLOCK_KAPPA:
        label = "mixed"
    else:
        label = "neither"
    return {"frequencies": sorted(int(k) for k in freqs), "variance_share": float(share), "kappa": kappa, "phi": phi,
            "pizza_excess": excess, "chance": chance, "net_excess": net, "worst_big_excess": worst,
            "label": label}


def distance_irrelevance(logits):
    """Zhong et al.'s distance irrelevance of a logit grid (p,)*T + (p,) (module docstring)."""
    p, T = logits.shape[-1], logits.ndim - 1
    tuples = all_tuples(p, T)                                       # (N, T)
    sums = grid_sums(T, p)
    correct = logits.reshape(-1, p)[np.arange(len(sums)), sums]     # (N,) the correct logit
    diffs = (tuples[:, 1:] - tuples[:, :1]) % p                     # (N, T-1)
    group = np.ravel_multi_index(diffs.T, (p,) * (T - 1)) if T > 1 else np.zeros(len(sums), int)
    table = np.zeros((p ** (T - 1), p))                             # (differences, s)
    table[group, sums] = correct
    overall = float(np.std(correct))
    return float(np.mean(np.std(table, axis=1)) / overall) if overall > 0 else math.nan


def gradient_symmetricity(params, activation="relu", seq_len=2):
    """Zhong et al.'s gradient symmetricity (module docstring), in float64 on the host."""
    P = {k: to_numpy(v).astype(np.float64) for k, v in params.items()}
    p = P["E"].shape[0]
    T = seq_len
    draws = np.random.default_rng(TRIPLE_SEED).choice(p ** (T + 1), size=min(TRIPLES, p ** (T + 1)), replace=False)
    # one embedding table per position (the rows of E, stacked T times), so the gradient of
    # each position's row comes back separately even when two tokens are equal
    tiled = {**P, "E": np.concatenate([P["E"]] * T)}
    offsets = p * np.arange(T)
    cosines = []
    for draw in draws:
        *tokens, c = np.unravel_index(draw, (p,) * (T + 1))
        x = (np.asarray(tokens) + offsets)[None, :]                 # (1, T)
        _, cache = rnn.forward(tiled, x, activation)
        dlogits = np.zeros((1, p))
        dlogits[0, c] = 1.0
        rows = rnn.backward(tiled, cache, dlogits)["E"][x[0]]       # (T, D) each position's gradient
        norms = np.linalg.norm(rows, axis=1)
        for i, l in itertools.combinations(range(T), 2):
            if norms[i] > 0 and norms[l] > 0:
                cosines.append(float(rows[i] @ rows[l] / (norms[i] * norms[l])))
    return float(np.mean(cosines)) if cosines else math.nan


def measure(params, activation, seq_len, logits, sets) -> ClockPizza:
    """fourier.json's `clock_pizza`: per frequency, per named set ({name: freqs}) with its
    label, and Zhong et al.'s two measures."""
    rows = frequency_fits(logits)
    return {"terms": list(TERMS), "label_rule": LABEL_RULE,
            "measures": MEASURES,
            "frequencies": rows,
            "sets": {name: judge(rows, freqs) for name, freqs in sets.items()},
            "distance_irrelevance": distance_irrelevance(logits),
            "gradient_symmetricity": gradient_symmetricity(params, activation, seq_len)}
