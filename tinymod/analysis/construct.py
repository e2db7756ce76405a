"""RNNs built by hand that add residues with chosen frequencies, by either of the two known
algorithms: the Clock (Fourier multiplication, Nanda et al. 2023) or the Pizza (Zhong et al.
2023), or a mix of the two. Ground truth for every measure that claims to tell them apart.

Nothing here is trained. The construction (letters: K planted frequencies, M phases,
R offsets, beta = 2):

* E[a] = (cos w_k a, sin w_k a) for each planted k: D = 2K, nothing at other frequencies.
* Hidden unit 0 is a constant 1 at t = 1 (bias 1, no input). Units 1..2K are carriers:
  they copy cos/sin(w_k a) + beta into h_1 (beta keeps ReLU in its linear part).
* Product units (k, j, r), with phase phi_j = 2 pi j / M and offset theta_r = 2 pi r / R:
  W_hh reads the carriers (minus beta, through unit 0) and W_ih the second token, so
      pre_2 = cos(w_k a - phi_j) + cos(w_k b - phi_j - theta_r)
            = 2 cos((d + theta_r) / 2) cos(m - phi_j),   d = w_k (a - b),  m = (w_k (a + b) - theta_r) / 2.
* The readout W_out[c, (k, j, r)] = cos(2 phi_j + theta_r - w_k c). Summing relu(pre_2) over
  the M phases keeps the second harmonic of relu(cos): |cos((d + theta_r)/2)| cos(w_k (a + b - c)).
* The Clock (`form="clock"`, R >= 2 offsets): summing over the R offsets makes the amplitude
  nearly independent of a - b. The logits are then close to const * sum_k cos(w_k (a + b - c)),
  largest at c = a + b mod p whatever a - b is.
* The Pizza (`form="pizza"`, one offset, theta = 0): nothing averages the amplitude, so the
  logits are const * sum_k |cos(w_k (a - b) / 2)| cos(w_k (a + b - c)): both tokens sit on
  one circle per frequency, and the correct logit depends on a - b. Still right on every pair
  (p odd: the amplitude never vanishes), and as sparse in Fourier space as the Clock.
* A mix (`pizza_share` f in (0, 1)): both sets of product units side by side, the Pizza's
  readout scaled by f and the Clock's by 1 - f.

What is left over (harmonics M +- 2 aliased by the finite phase grid, the ripple of the
offset sum) stays at the planted frequencies on the answer axis, so E, E @ W_ih.T and W_out
hold energy at the planted frequencies alone. `build` checks every pair is classified right.
"""
import numpy as np

from tinymod.model import rnn
from tinymod.model.limits import check_memory
from tinymod.model.data import all_tuples, targets
from tinymod.errors import TinymodError

BETA = 2.0


def check_freqs(p, freqs):
    freqs = sorted(set(int(k) for k in freqs))
    if p < 3:
        raise TinymodError(f"p must be at least 3 to plant a frequency, got {p}")
    if not freqs:
        raise TinymodError("give at least one frequency")
    bad = [k for k in freqs if not 1 <= k <= (p - 1) // 2]
    if bad:
        raise TinymodError(f"frequencies must lie in 1..{(p - 1) // 2} for p = {p}, got {bad}")
    return freqs


FORMS = ("clock", "pizza")


def pizza_share_of(form, pizza_share=None):
    """The Pizza's share of the readout: 0 for the Clock, 1 for the Pizza, or the given mix."""
    if form not in FORMS:
        raise TinymodError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
    if pizza_share is None:
        return 1.0 if form == "pizza" else 0.0
    if not 0 <= pizza_share <= 1:
        raise TinymodError(f"the pizza share must lie in [0, 1], got {pizza_share}")
    return float(pizza_share)


def build(p, freqs, phases=16, offsets=8, dtype="float64", scale=1.0, form="clock", pizza_share=None):
    """(params, accuracy on all pairs) of the hand-built RNN; raises if any pair is wrong.
    `form` is "clock" (R = `offsets` offsets; one offset is a Pizza) or "pizza" (one offset);
    `pizza_share` f mixes them (a Pizza with weight f beside a Clock with 1 - f). `scale`
    multiplies the readout: the logits, so the model's confidence (not its answers)."""
    freqs = check_freqs(p, freqs)
    share = pizza_share_of(form, pizza_share)
    if not scale > 0:
        raise TinymodError(f"the logit scale must be positive, got {scale}")
    if phases < 4 or offsets < 1:
        raise TinymodError(f"need at least 4 phases and 1 offset, got {phases} and {offsets}")
    # each part: (its offsets, its readout weight); the Pizza has one offset
    parts = [(R, w) for R, w in ((offsets, 1 - share), (1, share)) if w > 0]
    K = len(freqs)
    D, H = 2 * K, 1 + 2 * K + K * phases * sum(R for R, _ in parts)
    # the check runs the model over all p^2 pairs: hidden states and logits
    check_memory(8 * (p * p * (H + 2 * p) + H * H + 2 * p * H), f"constructing p = {p} with H = {H}")
    n = np.arange(p)
    E = np.zeros((p, D))
    W_ih, W_hh, b_h = np.zeros((H, D)), np.zeros((H, H)), np.zeros(H)
    W_out = np.zeros((p, H))
    b_h[0] = 1.0                                         # unit 0: h_1 = 1
    phi = 2 * np.pi * np.arange(phases) / phases
    unit = 1 + 2 * K
    for i, k in enumerate(freqs):
        w = 2 * np.pi * k / p
        cos_in, sin_in = 2 * i, 2 * i + 1                # embedding columns
        cos_unit, sin_unit = 1 + 2 * i, 2 + 2 * i        # carrier units
        E[:, cos_in], E[:, sin_in] = np.cos(w * n), np.sin(w * n)
        W_ih[cos_unit, cos_in] = W_ih[sin_unit, sin_in] = 1.0
        b_h[cos_unit] = b_h[sin_unit] = BETA
        for R, weight in parts:
            for ph in phi:
                for th in 2 * np.pi * np.arange(R) / R:
                    # second token: cos(w b - ph - th) = cos(ph + th) cos(w b) + sin(ph + th) sin(w b)
                    W_ih[unit, cos_in], W_ih[unit, sin_in] = np.cos(ph + th), np.sin(ph + th)
                    # first token, from the carriers: cos(w a - ph), removing beta through unit 0
                    W_hh[unit, cos_unit], W_hh[unit, sin_unit] = np.cos(ph), np.sin(ph)
                    W_hh[unit, 0] = -BETA * (np.cos(ph) + np.sin(ph))
                    W_out[:, unit] = weight * scale / (phases * R) * np.cos(2 * ph + th - w * n)
                    unit += 1
    params = {"E": E, "W_ih": W_ih, "W_hh": W_hh, "b_h": b_h, "W_out": W_out, "b_out": np.zeros(p)}
    params = {k: v.astype(dtype) for k, v in params.items()}
    x = all_tuples(p, 2)
    logits, _ = rnn.forward(params, x, "relu")
    accuracy = float(np.mean(np.argmax(logits, axis=1) == targets(x, p)))
    if accuracy < 1.0:
        raise TinymodError(f"frequencies {freqs} with {phases} phases classify only "
                           f"{100 * accuracy:.2f}% of pairs mod {p}; add frequencies or phases")
    return params, accuracy


def save(path, params, freqs, phases, offsets, scale, share):
    """Write a built model as a checkpoint every analysis reads (its config's `constructed`
    says how it was built); returns the config."""
    from tinymod.training import checkpoint
    settings = {"p": params["E"].shape[0], "d_embed": params["E"].shape[1], "d_hidden": params["W_hh"].shape[0],
                "activation": "relu", "seq_len": 2, "frac": 0.3, "seed": 0, "dtype": "float64"}
    config = checkpoint.metadata(settings, 0, constructed={"freqs": sorted(set(freqs)), "phases": phases,
                                                           "offsets": offsets, "scale": scale, "pizza_share": share})
    checkpoint.save(path, params, config)
    return config
