"""Figures for the course: pictures that build intuition from arrays the lecture computed
(the clock of a sum, the votes of several frequencies, spectra side by side, a finite
difference's error, the clock forming). Like `plots`, each takes plain data and a path, draws
it with matplotlib's object API and saves it through the run folder's atomic writer; none
computes what it shows."""
import numpy as np

from tinymod.reports.plots import figure, label_outside, save


def _votes(ax, votes, answer, totals=()):
    """Each named vote over the answers c (thin lines) and the `totals` ((label, scores) pairs:
    the first thick and black, any second dashed), with the right answer marked; the legend
    sits outside the panel, so it hides no point."""
    for label, vote in votes.items():
        ax.plot(np.asarray(vote), lw=1, marker="o", ms=2.5, alpha=0.8, label=label)
    for (label, values), style in zip(totals, ({"color": "k", "lw": 2.2}, {"color": "0.35", "lw": 1.6, "ls": "--"})):
        ax.plot(np.asarray(values), label=label, **style)
    ax.axvline(answer, color="k", ls=":", lw=1, label=f"right answer c = {answer}")
    ax.axhline(0, color="0.6", lw=0.5)
    ax.set(xlabel="answer c", ylabel="score")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def phase_addition(p, k, a, b, votes, totals, path):
    """Left: the clock of frequency k (residue n at angle w_k n), with a, b and a + b marked;
    multiplying the points of a and b adds their angles, so it lands on (a + b) mod p.
    Right: `votes` (label -> scores over c) and `totals` ([(label, scores)]), peaking at the
    answer."""
    fig, (left, right) = figure(1, 2, figsize=(11.5, 4.2))
    angle = 2 * np.pi * k * np.arange(p) / p
    xy = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    left.scatter(xy[:, 0], xy[:, 1], s=12, color="0.55")
    label_outside(left, xy, 1 if p <= 32 else max(1, p // 16))
    for n, name, colour in ((a, "a", "tab:blue"), (b, "b", "tab:orange"), ((a + b) % p, "a + b", "k")):
        left.annotate("", xy[n], (0, 0), arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.6})
        left.plot([], [], color=colour, label=f"{name} = {n}: angle {k}·{n}·360°/{p}")
    left.set(aspect="equal", xticks=[], yticks=[], title=f"the clock of frequency {k} (p = {p})")
    left.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, -0.25))
    _votes(right, votes, (a + b) % p, totals)
    right.set_title(f"score of each answer c for a = {a}, b = {b}")
    return save(fig, path)


def votes(votes, answer, totals, path, title=""):
    """One panel: named votes over the answers c, their totals, and the right answer."""
    fig, ax = figure(figsize=(8.5, 3.8))
    _votes(ax, votes, answer, totals)
    ax.set_title(title)
    return save(fig, path)


def spectra(named, marks, path, title="", marked="in use"):
    """Energy spectra side by side: `named` maps a label to energy per frequency (index 0 the
    constant, which is left out); each is drawn as its share of its own non-constant energy,
    so tables of any size compare. `marks` (frequencies) are shaded, and `marked` says whose."""
    fig, ax = figure(figsize=(8, 3.8))
    for k in marks:
        ax.axvspan(k - 0.5, k + 0.5, color="0.9", lw=0)
    for label, spectrum in named.items():
        spectrum = np.asarray(spectrum, dtype=float)[1:]
        share = spectrum / (spectrum.sum() or 1.0)
        ax.plot(np.arange(1, len(spectrum) + 1), 100 * share, marker="o", ms=3, lw=1.2, label=label)
    ax.set(xlabel=f"frequency k (shaded: {marked})", ylabel="% of the table's energy", title=title)
    ax.legend(fontsize=7)
    return save(fig, path)


def error_by_step(steps, curves, path, title=""):
    """Log-log lines of a finite difference's error against its step, one per label in
    `curves` (label -> errors, one per step); errors of exactly 0 (a difference that rounds
    to the true value) cannot sit on a log axis and are left out of their line."""
    fig, ax = figure(figsize=(6.5, 4))
    steps = np.asarray(steps, dtype=float)
    for label, errors in curves.items():
        errors = np.asarray(errors, dtype=float)
        shown = errors > 0
        ax.loglog(steps[shown], errors[shown], marker="o", ms=3, label=label)
    ax.set(xlabel="step δθ of the central difference", ylabel="|numeric − backprop|", title=title)
    ax.legend(fontsize=8)
    return save(fig, path)


def clock_frames(frames, k, path):
    """The embedding restricted to frequency k (its clock), one panel per snapshot, on one
    scale: `frames` is [(step, xy (p, 2) from tabulate.clock_coordinates, the norm of the
    whole centred embedding)], and each panel is drawn relative to that norm, so the circle's
    size is the share of the embedding that frequency k holds."""
    fig, axes = figure(1, len(frames), figsize=(2.6 * len(frames), 3.0), squeeze=False, sharex=True, sharey=True)
    for ax, (step, xy, norm) in zip(axes[0], frames):
        xy = np.asarray(xy) / (norm or 1.0)
        ax.scatter(xy[:, 0], xy[:, 1], s=9, c=(k * np.arange(len(xy))) % len(xy), cmap="twilight")
        ax.set(aspect="equal", xticks=[], yticks=[], title=f"step {step}\n{100 * np.sum(xy ** 2):.0f}% of E")
    fig.suptitle(f"the embedding restricted to frequency {k}, on one scale (colour: {k}·a mod p)", y=1.08)
    return save(fig, path)
