"""The running sum through the sequence: what the recurrence carries from step t to step
t + 1, whether it is a clock of s_t = x_1 + ... + x_t, and whether it is the same map at
every step.

Letters: N = p**T tuples, H hidden units, K key frequencies, G gates (1 for the vanilla cell).

What carries information forward is not h_t itself but what W_hh passes on: the message
m_t = h_t W_hh^T (H,) of the vanilla cell, or each gate's recurrent input h_t W_hh,g^T of a
gated cell. Every measure is a least-squares fit over all tuples (each column centred,
pooled over columns; `fraction_explained` is 1 - FVU) on a constant and, for every key
frequency, cos/sin of w_k times some angles (MEASURES says which).
"""
import math

import numpy as np

from tinymod.analysis import fits, fourier
from tinymod.model import gated

MEASURES = (
    "steps[t]: h_t fitted on cos/sin(w_k s_t) (fraction_explained) and on each token's cos/sin(w_k x_j), "
    "j <= t (fraction_explained_by_tokens); carried[t], t < T: the message h_t W_hh^T (a gated cell: each "
    "gate's h_t W_hh,g^T) fitted on cos/sin(w_k s_t) (by_sum, and per frequency alone) and on the "
    "tokens' terms (by_tokens); the next pre-activation (vanilla) fitted on the waves of (s_t, x_{t+1}) "
    "(next_by_sum_and_token) and of (x_1 .. x_{t+1}) (next_by_tokens); same_map: the cosine between "
    "consecutive steps' maps s -> mean message over the tuples with s_t = s (each centred over s): 1 "
    "when the carried clock is one time-invariant map")

ROTATION_RULE = (
    "W_hh restricted to frequency k's plane P (the span of h_1's cos and sin(w_k x_1) "
    "directions, orthonormalised): R = P.T @ W_hh @ P. in_plane = ||R|| / ||W_hh @ P|| (1: "
    "W_hh maps the plane into itself); rotation_score = smallest / largest singular value of "
    "R (1: R is a rotation times a scale; 0: it flattens the plane onto a line); "
    "angle_degrees, the angle of the rotation closest to R; scale, R's mean singular value")


def fraction_explained(h, angles, key, p):
    """1 - FVU of h (N, H), centred per unit, by a constant and cos/sin(w_k angle) for each
    key frequency and each angle (N,)."""
    X = fourier.design(angles, key, p)
    coef, *_ = np.linalg.lstsq(X, h, rcond=None)
    unexplained = fits.fvu(h, X @ coef, axis=0)
    return float("nan") if math.isnan(unexplained) else 1.0 - unexplained


def key_planes(h1, first, key, p):
    """{k: (H, 2) orthonormal basis of the plane h_1 uses for frequency k, or None}."""
    X = fourier.design([first], key, p)
    coef, *_ = np.linalg.lstsq(X, h1, rcond=None)                    # (1 + 2K, H)
    planes = {}
    for i, k in enumerate(key):
        directions = coef[1 + 2 * i: 3 + 2 * i].T                     # (H, 2) cos, sin
        q, r = np.linalg.qr(directions)
        planes[k] = q if abs(r[1, 1]) > 1e-9 * max(abs(r[0, 0]), 1e-300) else None
    return planes


def rotation(W_hh, plane):
    """ROTATION_RULE's numbers for one plane (H, 2)."""
    if plane is None:
        return {"in_plane": None, "rotation_score": None, "angle_degrees": None, "scale": None}
    R = plane.T @ W_hh @ plane                                        # (2, 2)
    moved = np.linalg.norm(W_hh @ plane)
    s = np.linalg.svd(R, compute_uv=False)
    return {"in_plane": float(np.linalg.norm(R) / moved) if moved > 0 else None,
            "rotation_score": float(s[1] / s[0]) if s[0] > 0 else None,
            "angle_degrees": float(np.degrees(np.arctan2(R[1, 0] - R[0, 1], R[0, 0] + R[1, 1]))),
            "scale": float(s.mean())}


VANILLA_ONLY = ("not measured: the rotation of the running sum by W_hh is the vanilla cell's; a gated "
                "cell's W_hh feeds its gates, not its state")


def messages(h, W_hh, cell):
    """{name: what the recurrence passes on from h (N, H)}: h W_hh^T for the vanilla cell,
    each gate's block for a gated cell."""
    if cell == "rnn":
        return {"h W_hh^T": h @ W_hh.T}
    H = W_hh.shape[1]
    return {f"{g}: h W_hh,{g}^T": h @ W_hh[i * H:(i + 1) * H].T for i, g in enumerate(gated.GATES[cell])}


def mean_by(values, labels, p):
    """(p, columns): the mean of `values` over the rows with each label 0..p-1."""
    out = np.zeros((p, values.shape[1]))
    np.add.at(out, labels, values)
    return out / np.maximum(np.bincount(labels, minlength=p), 1)[:, None]


def cosine(a, b):
    """The cosine between two arrays, each centred over its rows first; None when one is 0."""
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.sum(a * b) / norm) if norm > 0 else None


def carried(tables, key, p, cell):
    """MEASURES' carried, next-pre-activation and same-map entries for every t < T."""
    tokens, hs, W_hh = tables["tokens"], tables["hs"], tables["W_hh"]
    T = tokens.shape[1]
    rows, maps = [], []
    for t in range(1, T):
        running = tokens[:, :t].sum(axis=1) % p
        seen = list(tokens[:, :t].T)
        sent = messages(hs[t - 1], W_hh, cell)
        for name, m in sent.items():
            row = {"t": t, "object": name, "by_sum": fraction_explained(m, [running], key, p),
                   "by_tokens": fraction_explained(m, seen, key, p),
                   "by_sum_per_frequency": {str(k): fraction_explained(m, [running], [k], p) for k in key}}
            if cell == "rnn":
                pre = tables["preactivations"][t]                          # h_{t+1}^pre (N, H)
                row["next_by_sum_and_token"] = fraction_explained(pre, [running, tokens[:, t]], key, p)
                row["next_by_tokens"] = fraction_explained(pre, list(tokens[:, :t + 1].T), key, p)
            rows.append(row)
        maps.append({name: mean_by(m, running, p) for name, m in sent.items()})
    same = [{"from": t, "to": t + 1, "object": name, "cosine": cosine(maps[t - 1][name], maps[t][name])}
            for t in range(1, len(maps)) for name in maps[t]]
    return rows, same


def measure_running_sum(tables, key, p):
    """partial_sums for fourier.json: one entry per step t, what is carried from each step
    to the next, the rotation of W_hh in each key plane (vanilla), and the clock of h_t at
    the strongest key frequency (`key[0]` first)."""
    tokens, hs, cell = tables["tokens"], tables["hs"], tables["cell"]      # (N, T), [h_1 .. h_T]
    T = tokens.shape[1]
    steps = []
    for t in range(1, T + 1):
        h, running = hs[t - 1], tokens[:, :t].sum(axis=1)
        steps.append({"t": t,
                      "fraction_explained": fraction_explained(h, [running], key, p),
                      "fraction_explained_by_tokens": fraction_explained(h, list(tokens[:, :t].T), key, p)})
    planes = key_planes(hs[0], tokens[:, 0], key, p)
    sent, same = carried(tables, key, p, cell)
    vanilla = cell == "rnn"
    out = {"measures": MEASURES, "rotation_rule": ROTATION_RULE if vanilla else VANILLA_ONLY,
           "key_frequencies": [int(k) for k in key], "steps": steps, "carried": sent, "same_map": same,
           "rotation": [{"frequency": int(k), **rotation(tables["W_hh"], planes[k])} for k in key]
           if vanilla else None}
    if key and planes[key[0]] is not None:
        plane, k = planes[key[0]], key[0]
        points = []
        for t in range(1, T + 1):
            running = tokens[:, :t].sum(axis=1) % p
            xy = hs[t - 1] @ plane                                   # (N, 2)
            mean = np.zeros((p, 2))
            np.add.at(mean, running, xy)
            points.append((mean / np.bincount(running, minlength=p)[:, None]).tolist())
        out["clock"] = {"frequency": int(k), "points": points}      # [t][s] -> (x, y)
    return out
