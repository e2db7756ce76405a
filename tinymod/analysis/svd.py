"""Low rank: singular values of the weights and of the tables a residue sees, their energy,
effective rank, and which Fourier frequency each top singular vector belongs to.

Letters: p residues, D embedding width, H hidden width. "Energy" of a matrix is the sum of
its squared singular values (its squared Frobenius norm).
"""
import numpy as np

from tinymod.analysis import fourier
from tinymod.model import gated, rnn
from tinymod.model.backend import to_numpy
from tinymod.model.trace import trace

TOP_VECTORS = 20   # residue-axis singular vectors whose frequency is reported


def matrices(params, activation="relu"):
    """The weights and the residue tables: name -> (matrix, whether rows are residues). A
    gated cell's W_ih and W_hh are taken gate by gate (`gated_matrices`)."""
    P = {k: to_numpy(v).astype(np.float64) for k, v in params.items()}   # SVDs run on the host
    U = P["E"] @ P["W_ih"].T                                    # (p, H) second-token table
    cell = rnn.cell_of(params)
    if cell != "rnn":
        return gated_matrices(P, U, gated.GATES[cell])
    H1 = trace(P, np.arange(P["E"].shape[0])[:, None], activation)["h_1"]     # (p, H) h_1 per token
    return {
        "E": (P["E"], True),
        "W_ih": (P["W_ih"], False),
        "W_hh": (P["W_hh"], False),
        "W_out": (P["W_out"], True),
        "E @ W_ih.T": (U, True),                                 # what token b writes in
        "h_1 @ W_hh.T": (H1 @ P["W_hh"].T, True),                # what token a carries to step 2
    }


def gated_matrices(P, U, gates):
    """E, W_out, the stacked input table E @ W_ih.T (p, G*H), and per gate g its blocks
    W_ih (g) (H, D), W_hh (g) (H, H) and E @ W_ih (g).T (p, H)."""
    H = P["W_out"].shape[1]
    out = {"E": (P["E"], True), "W_out": (P["W_out"], True), "E @ W_ih.T": (U, True)}
    for i, g in enumerate(gates):
        rows = slice(i * H, (i + 1) * H)
        out[f"W_ih ({g})"] = (P["W_ih"][rows], False)
        out[f"W_hh ({g})"] = (P["W_hh"][rows], False)
        out[f"E @ W_ih ({g}).T"] = (U[:, rows], True)
    return out


def cumulative_energy(singular_values):
    """Share of energy in the top r singular values, for r = 1..n (monotone, ends at 1)."""
    energy = np.asarray(singular_values, dtype=np.float64) ** 2
    total = energy.sum()
    return np.cumsum(energy) / total if total > 0 else np.ones_like(energy)


def effective_rank(shares, level):
    """The smallest r whose top-r singular values hold at least `level` of the energy."""
    return int(np.searchsorted(shares, level - 1e-12) + 1)


def vector_frequency(u):
    """(dominant frequency, the fraction of the vector's energy at that frequency) of a
    residue-indexed vector u (p,)."""
    shares = fourier.spectrum(u) / max(np.dot(u, u), 1e-300)
    k = int(np.argmax(shares))
    return k, float(shares[k])


def measure_matrices(params, activation="relu", key=()):
    """Per matrix: singular values, energy in the top r, rank at 90% and 99%, the energy in
    the top 2 * len(key) (a cos/sin pair per key frequency), and for residue-axis matrices
    the frequency and purity of each of the top singular vectors."""
    report = {}
    for name, (M, residues) in matrices(params, activation).items():
        u, s, _ = np.linalg.svd(M, full_matrices=False)
        shares = cumulative_energy(s)
        entry = {"shape": list(M.shape), "singular_values": s.tolist(),
                 "energy_share_top": shares.tolist(),
                 "rank_90": effective_rank(shares, 0.90), "rank_99": effective_rank(shares, 0.99)}
        if key:
            r = min(2 * len(key), len(s))
            entry["key_rank"] = r
            entry["energy_share_key_rank"] = float(shares[r - 1])
        if residues:
            top = [vector_frequency(u[:, i]) for i in range(min(TOP_VECTORS, len(s)))]
            entry["top_vectors"] = [{"index": i, "frequency": k, "purity": purity,
                                     "is_key": k in key}
                                    for i, (k, purity) in enumerate(top)]
        report[name] = entry
    return report
