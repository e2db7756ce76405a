"""The running sum through the sequence: does h_t carry cos/sin(w_k s_t), where
s_t = x_1 + ... + x_t, at every step t, and does W_hh turn the key planes like a clock?

Letters: N = p**T tuples, H hidden units, K key frequencies.

For each t the variance of h_t over all tuples (each unit centred, pooled over units) is
fitted twice by least squares, on a constant and, for every key frequency, either the
running sum's terms cos/sin(w_k s_t) (`fraction_explained`) or the individual tokens' terms
cos/sin(w_k x_j), j <= t (`fraction_explained_by_tokens`). A network that carries a clock
of s_t scores high on the first at every t; one that keeps the tokens apart scores higher
on the second. At t = 1 both are the same fit.
"""
import math

import numpy as np

from tinymod.analysis import fits, fourier

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


def analyze(tables, key, p):
    """partial_sums for fourier.json: one entry per step t, the rotation of W_hh in each
    key plane, and the clock of h_t at the strongest key frequency (`key[0]` first)."""
    tokens, hs = tables["tokens"], tables["hs"]                       # (N, T), [h_1 .. h_T]
    T = tokens.shape[1]
    steps = []
    for t in range(1, T + 1):
        h, running = hs[t - 1], tokens[:, :t].sum(axis=1)
        steps.append({"t": t,
                      "fraction_explained": fraction_explained(h, [running], key, p),
                      "fraction_explained_by_tokens": fraction_explained(h, list(tokens[:, :t].T), key, p)})
    planes = key_planes(hs[0], tokens[:, 0], key, p)
    out = {"measures": " ".join(__doc__.split("\n\n")[2].split()), "rotation_rule": ROTATION_RULE,
           "key_frequencies": [int(k) for k in key], "steps": steps,
           "rotation": None if tables["W_hh"] is None else
                       [{"frequency": int(k), **rotation(tables["W_hh"], planes[k])} for k in key]}
    if tables["W_hh"] is None:
        out["rotation_rule"] = VANILLA_ONLY
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
