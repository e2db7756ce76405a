"""matplotlib figures, built with the object API (`matplotlib.figure.Figure`) and saved as
PNG through the run folder's atomic writer. No pyplot, no backend switch: importing
tinymod leaves a notebook user's matplotlib as it was, and no display is needed.

Each function takes plain data (lists, NumPy arrays) and a path; none computes anything
beyond what it draws.
"""
import os
import sys


def _private_font_cache():
    """matplotlib builds its font list into $HOME (~/.cache/matplotlib) the first time it is
    loaded; tinymod writes nothing outside the folders it is given and its own install, so
    unless the user chose a place (MPLCONFIGDIR) or matplotlib is already loaded, the list
    is kept beside tinymod's compiled kernels (its __pycache__, as numba's cache), or, where
    that folder is read-only, built in a temporary folder removed at exit (about 0.2 s more
    per process). The environment is restored either way."""
    if "MPLCONFIGDIR" in os.environ or "matplotlib" in sys.modules:
        return
    import importlib
    from pathlib import Path
    folder = Path(__file__).resolve().parent.parent / "__pycache__" / "matplotlib"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK)
    except OSError:
        writable = False
    if not writable:
        import atexit
        import shutil
        import tempfile
        folder = Path(tempfile.mkdtemp(prefix="tinymod-matplotlib-"))
        atexit.register(shutil.rmtree, folder, True)
    os.environ["MPLCONFIGDIR"] = str(folder)
    try:
        importlib.import_module("matplotlib.font_manager")      # reads the folder once and keeps it
    finally:
        del os.environ["MPLCONFIGDIR"]


_private_font_cache()
from matplotlib.figure import Figure  # noqa: E402


def figure(rows=1, cols=1, **kwargs):
    """(figure, axes) like pyplot.subplots, without pyplot's global state."""
    figsize = kwargs.pop("figsize", None)
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, **kwargs)


def save(fig, path):
    from tinymod.training import runs
    fig.tight_layout()
    runs.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    return path


def _column(rows, key):
    return [row[key] for row in rows]


def _steps(rows):
    return [row["step"] for row in rows]


def _step_axis(ax, rows=None):
    """Steps on a log axis that still shows step 0: linear from 0 to the first evaluated step
    after 0, then logarithmic, so no stretch of the axis is empty of data."""
    first = min((r["step"] for r in rows or () if r["step"] > 0), default=1)
    ax.set_xscale("symlog", linthresh=first, linscale=0.3)
    ax.set_xlabel(f"step (linear to {first}, then log scale)")
    ax.set_xlim(left=0)


def _mark_grok(ax, rows):
    from tinymod.model.limits import GROK_ACC
    grok = next((r["step"] for r in rows if r["test_acc"] >= GROK_ACC), None)
    if grok is not None:
        ax.axvline(grok, color="k", ls=":", lw=1, label=f"test accuracy 99% (step {grok})")


def training_curves(rows, path, title=""):
    """Loss (log-log) and accuracy (log-x) of train and test against step.

    Log-scaled steps show grokking best: memorisation happens early, generalisation
    much later, and a linear axis squeezes the first into a sliver.
    """
    steps = _steps(rows)
    fig, (ax_loss, ax_acc) = figure(1, 2, figsize=(11, 4.2))
    ax_loss.plot(steps, _column(rows, "train_loss"), ".-", ms=3, label="train")
    ax_loss.plot(steps, _column(rows, "test_loss"), ".-", ms=3, label="test")
    ax_loss.set(yscale="log", ylabel="cross-entropy loss")
    ax_acc.plot(steps, [100 * a for a in _column(rows, "train_acc")], ".-", ms=3, label="train")
    ax_acc.plot(steps, [100 * a for a in _column(rows, "test_acc")], ".-", ms=3, label="test")
    ax_acc.set(ylabel="accuracy (%)", ylim=(-2, 102))
    for ax in (ax_loss, ax_acc):
        _step_axis(ax, rows)
        _mark_grok(ax, rows)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(title or "training curves")
    return save(fig, path)


def weight_norm(rows, path, title=""):
    """The L2 norm of all parameters against step (weight decay shrinks it as the model
    trades memorisation for the Fourier algorithm)."""
    fig, ax = figure(figsize=(6, 4))
    ax.plot(_steps(rows), _column(rows, "weight_norm"))
    _step_axis(ax, rows)
    ax.set(ylabel="weight norm ||θ||₂", title=title or "weight norm")
    ax.grid(True, which="both", alpha=0.3)
    return save(fig, path)


def fourier_spectra(report, path, labels):
    """Each component's share of non-constant energy per frequency (log scale); key
    frequencies marked. `labels`: {component: legend text} (tinymod.analysis.tabulate.components)."""
    fig, ax = figure(figsize=(10, 4.5))
    for name, label in labels.items():
        spec = report["spectra"][name]
        total = sum(spec[1:]) or 1.0
        ax.plot(range(1, len(spec)), [max(e / total, 1e-12) for e in spec[1:]], marker=".", label=label)
    for k in report["key_frequencies"]:
        ax.axvline(k, color="grey", alpha=0.3, lw=3)
    ax.set(yscale="log", xlabel="frequency k", ylabel="share of non-constant energy",
           ylim=(1e-8, 1.5), title=f"Fourier spectra, p = {report['p']}; key frequencies "
                                    f"{', '.join(map(str, report['key_frequencies']))} (grey)")
    ax.legend(fontsize=8)
    return save(fig, path)


def hidden_spectrum_2d(report, path):
    """log10 energy of the hidden state per frequency pair (k_a, k_b)."""
    import numpy as np
    energy = np.array(report["hidden_spectrum_2d"])
    fig, ax = figure(figsize=(5.5, 5))
    image = ax.imshow(np.log10(energy + max(1e-12 * energy.max(), 1e-300)), origin="lower", cmap="viridis")
    fig.colorbar(image, ax=ax, label="log10 energy")
    for k in report["key_frequencies"]:              # where a, b and a ± b terms at k land
        for cell in ((0, k), (k, 0), (k, k)):
            ax.add_patch(_square(cell))
    ax.set(xlabel="frequency of b", ylabel="frequency of a",
           title="hidden state h_2 over (a, b)\n(boxes: (k, 0), (0, k), (k, k) for each key k)")
    return save(fig, path)


def _square(cell):
    from matplotlib.patches import Rectangle
    row, col = cell
    return Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="white", lw=0.8)


def neurons_per_frequency(report, path):
    counts = report["neurons"]["count_per_frequency"]
    key = set(report["key_frequencies"])
    fig, ax = figure(figsize=(9, 3.8))
    ax.bar(range(1, len(counts)), counts[1:],
           color=["C3" if k in key else "C0" for k in range(1, len(counts))])
    ax.set(xlabel="dominant frequency", ylabel="hidden units",
           title=f"units per dominant frequency (red: key; {counts[0]} dead units not shown)")
    return save(fig, path)


def clock(report, path):
    """Each key frequency's embedding of every residue, on its own circle, labelled."""
    import numpy as np
    clocks = report["clock"]
    n = max(len(clocks), 1)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = figure(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (k, points) in zip(axes.flat, clocks.items()):
        xy = np.array(points)
        ax.axis("on")
        ax.scatter(xy[:, 0], xy[:, 1], s=8)
        label_outside(ax, xy, max(1, len(xy) // 16))
        ax.set(aspect="equal", title=f"k = {k}", xticks=[], yticks=[])
    fig.suptitle("the clock: embeddings restricted to each key frequency")
    return save(fig, path)


def singular_values(report, path):
    """Each matrix's singular values, normalised by the largest (log scale)."""
    fig, ax = figure(figsize=(8, 4.5))
    for name, entry in report.items():
        s = entry["singular_values"]
        top = s[0] or 1.0                                 # an all-zero matrix has no scale
        ax.plot(range(1, len(s) + 1), [max(v / top, 1e-10) for v in s], marker=".", ms=3,
                label=f"{name} (90%: rank {entry['rank_90']})")
    key_rank = next((e["key_rank"] for e in report.values() if "key_rank" in e), None)
    if key_rank:
        ax.axvline(key_rank, color="grey", ls="--", label=f"2 × key frequencies = {key_rank}")
    ax.set(yscale="log", xscale="log", xlabel="index", ylabel="σ_i / σ_1",
           title="singular values", ylim=(1e-6, 1.5))
    ax.legend(fontsize=8)
    return save(fig, path)


def ablation_single(report, path):
    """Accuracy on all pairs after removing each frequency alone."""
    single = report["single"]
    fig, (ax, ax_loss) = figure(2, 1, figsize=(10, 6), sharex=True)
    colours = ["C3" if s["is_key"] else "C0" for s in single]
    freqs = [s["frequency"] for s in single]
    # accuracy lost, in points: bars of 100% would hide the few that move
    lost = [100 * (report["baseline"]["accuracy"] - s["accuracy"]) for s in single]
    ax.bar(freqs, lost, color=colours)
    ax.axhline(0, color="k", lw=0.8)
    ax.set(ylabel="accuracy lost, all tuples\n(percentage points)",
           title=f"removing one frequency (red: key), site: {report['site']}; "
                 f"no ablation: {100 * report['baseline']['accuracy']:.1f}%")
    # accuracy hardly moves for one frequency; the loss shows what each removal costs
    ax_loss.bar(freqs, [max(s["loss"], 1e-12) for s in single], color=colours)
    ax_loss.axhline(max(report["baseline"]["loss"], 1e-12), color="k", lw=0.8)
    ax_loss.set(yscale="log", xlabel="frequency removed", ylabel="loss, all tuples (log)")
    return save(fig, path)


def ablation_cumulative(report, path):
    """Accuracy as key frequencies are removed one after another, beside the controls."""
    fig, ax = figure(figsize=(7, 4.5))
    x0 = [0]
    base = [100 * report["baseline"]["accuracy"]]

    def curve(points):
        return x0 + [len(c["removed"]) for c in points], base + [100 * c["accuracy"] for c in points]

    for i, order in enumerate(report["control_random_key_orders"]):
        ax.plot(*curve(order), color="C1", alpha=0.35, label="key, random orders" if i == 0 else None)
    ax.plot(*curve(report["cumulative"]), "o-", color="C3", label="key, strongest first")
    ax.plot(*curve(report["control_non_key"]), "s-", color="C0", label="non-key (control)")
    ax.set(xlabel="frequencies removed", ylabel="accuracy, all tuples (%)", ylim=(-2, 102),
           title="removing frequencies one after another")
    ax.set_xticks(range(len(report["cumulative"]) + 1))            # whole frequencies only
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return save(fig, path)


PHASE_COLOURS = {"memorisation": "C1", "circuit formation": "C2", "cleanup": "C4"}


SET_MARKS = {"in_use_key_frequencies": ("in use", "o", "C3", 13), "key_frequencies": ("spectral", "s", "C2", 9),
             "functional_key_frequencies": ("functional", "D", "C1", 5)}    # drawn largest first


def key_curve(report, path):
    """The key curve (fourier.json): losses along the strength order on log axes, each named
    set's members marked on the removal-ratio panel."""
    rows = report["key_curve"]
    n = _column(rows, "n")
    fig, (losses, removal) = figure(1, 2, figsize=(12, 4.5))
    for name, label in (("restricted_loss", "restricted (all tuples)"), ("excluded_loss", "excluded (train)"),
                        ("keep_loss", "only the first n kept in the weights")):
        losses.plot(n, [max(r[name], 1e-12) for r in rows], marker=".", label=label)
    losses.axhline(max(report["model_loss"], 1e-12), color="k", lw=0.8, ls=":", label="the model")
    losses.set(yscale="log", xlabel="n, the first n frequencies by logit energy", ylabel="cross-entropy loss",
               title="losses along the strength order")
    removal.plot(n, _column(rows, "removal_loss_ratio"), color="grey", lw=0.8)
    for field, (label, marker, colour, size) in SET_MARKS.items():
        members = set(report[field])
        picked = [r for r in rows if r["frequency"] in members]
        removal.plot([r["n"] for r in picked], [r["removal_loss_ratio"] for r in picked], marker, color=colour,
                     mfc=colour if size < 6 else "none", ms=size, ls="none", label=f"{label} ({len(members)})")
    removal.axhline(report["key_sets"]["in_use"]["factor"], color="C3", lw=0.8, ls="--", label="in-use factor")
    removal.set(yscale="log", xlabel="n", ylabel="loss with the n-th alone removed / model's loss",
                title="removing one frequency from the weights")
    ax_ticks = [r["n"] for r in rows]
    for ax in (losses, removal):
        ax.set_xticks(ax_ticks, [f"{r['n']}\n{r['frequency']}" for r in rows], fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return save(fig, path)


def progress(report, path, title=""):
    """Six panels on one step axis (0, then log): accuracies, losses (with restricted and
    excluded), weight norm, energy at the key frequencies, sparsity and low rank; the
    phases shaded."""
    rows = report["rows"]
    steps = _steps(rows)
    fig, axes = figure(3, 2, figsize=(12, 10), sharex=True)
    (acc, loss), (norm, energy), (sparse, low) = axes
    for name, label in (("train_acc", "train"), ("test_acc", "test")):
        acc.plot(steps, [100 * r[name] for r in rows], label=label)
    acc.set(ylabel="accuracy (%)", ylim=(-2, 102))
    for name, label, style in (("train_loss", "train", "-"), ("test_loss", "test", "-"),
                               ("restricted_loss", "restricted (all tuples)", "-"),
                               ("restricted_test_loss", "restricted (test)", ":"),     # dotted: the two
                               ("excluded_loss", "excluded (train)", "-")):             # restricted lines overlap
        loss.plot(steps, [max(r[name], 1e-12) for r in rows], style, lw=2.2 if style == ":" else 1.2, label=label)
    loss.set(yscale="log", ylabel="cross-entropy loss")
    norm.plot(steps, _column(rows, "weight_norm"), color="k", label="all parameters")
    for name in rows[0]["weight_norm_per_matrix"]:
        norm.plot(steps, [r["weight_norm_per_matrix"][name] for r in rows], lw=0.8, label=name)
    norm.set(ylabel="weight norm")
    for name, label in (("E", "E"), ("U", "E @ W_ihᵀ"), ("W_out", "W_out"), ("logits", "logits")):
        energy.plot(steps, [100 * r["key_energy"][name] for r in rows], label=label)
    energy.set(ylabel=f"energy at {len(report['key_frequencies'])} key frequencies (%)", ylim=(-2, 102))
    sparse.plot(steps, _column(rows, "frequencies_for_90"), color="C0")
    sparse.set(ylabel="frequencies holding 90% of E @ W_ihᵀ")
    for name, label in (("U", "E @ W_ihᵀ"), ("W_out", "W_out")):
        low.plot(steps, [100 * r["top_2k_singular_energy"][name] for r in rows], label=label)
    low.set(ylabel=f"energy in top {2 * len(report['key_frequencies'])} singular values (%)", ylim=(-2, 102))
    for ax in axes.flat:
        for phase in report["phases"]:
            ax.axvspan(phase["start"], phase["end"], color=PHASE_COLOURS[phase["name"]], alpha=0.12,
                       label=phase["name"] if ax is acc else None)
        _step_axis(ax, rows)
        if ax not in axes[-1]:
            ax.set_xlabel("")
        ax.grid(True, which="both", alpha=0.3)
        if ax is not sparse:
            ax.legend(fontsize=7)
    fig.suptitle(title or f"through training: key frequencies {' '.join(map(str, report['key_frequencies']))}")
    return save(fig, path)


def grok_steps(groups, path):
    """The grok step of every run, one column of points per group of seeds; runs that never
    grokked drawn as x at the top."""
    fig, ax = figure(figsize=(max(5, 2 + 1.6 * len(groups)), 4))
    top = max([s for steps in groups.values() for s in steps if s is not None] or [1])
    for i, (name, steps) in enumerate(groups.items()):
        done = [s for s in steps if s is not None]
        spread = [i + 0.25 * (j / max(len(done) - 1, 1) - 0.5) for j in range(len(done))]   # side by side
        ax.scatter(spread, sorted(done), color="C0", alpha=0.8)
        missing = len(steps) - len(done)
        if missing:
            ax.scatter([i] * missing, [1.1 * top] * missing, marker="x", color="C3",
                       label="never grokked" if i == 0 else None)
    ax.set_xticks(range(len(groups)), [n.replace(", ", "\n") for n in groups], fontsize=7)
    ax.set(ylabel="grok step (test accuracy ≥ 99%)", title="grok step over seeds")
    ax.grid(True, alpha=0.3)
    return save(fig, path)


def phase_diagram(cells, axes, path):
    """The median grok step over two grid axes; cells where no run grokked marked x."""
    import numpy as np
    xs = sorted({k[0] for k in cells}, key=str)
    ys = sorted({k[1] for k in cells}, key=str)
    grid = np.full((len(ys), len(xs)), np.nan)
    fig, ax = figure(figsize=(1.5 + 1.2 * len(xs), 1.5 + 0.9 * len(ys)))
    for (x, y), steps in cells.items():
        done = [s for s in steps if s is not None]
        i, j = ys.index(y), xs.index(x)
        if done:
            grid[i, j] = float(np.median(done))
            ax.text(j, i, f"{grid[i, j]:.0f}\n{len(done)}/{len(steps)}", ha="center", va="center", fontsize=7)
        else:
            ax.text(j, i, "x", ha="center", va="center", color="C3", fontsize=14)
    image = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax, label="median grok step")
    ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax.set_yticks(range(len(ys)), [str(y) for y in ys])
    ax.set(xlabel=axes[0], ylabel=axes[1], title="grok step (x: no run grokked; n grokked / runs)")
    return save(fig, path)


def label_outside(ax, xy, step):
    """Label every `step`-th point with its index, pushed out from the centre along its radius
    so that neighbours on a circle do not print over each other."""
    import numpy as np
    centre = xy.mean(axis=0)
    reach = np.linalg.norm(xy - centre, axis=1).max() or 1.0
    for i in range(0, len(xy), step):
        out = xy[i] - centre
        out = out / (np.linalg.norm(out) or 1.0)
        ax.annotate(str(i), xy[i] + 0.12 * reach * out, fontsize=7, ha="center", va="center")
    ax.margins(0.15)


def clock_through_time(partial, path):
    """h_t projected on the strongest key frequency's plane (from h_1), averaged over the
    tuples with each running sum s_t, for t = 1..T: a clock of s_t draws a circle in the
    order k * s mod p at every step."""
    import numpy as np
    clock = partial["clock"]
    T = len(clock["points"])
    fig, axes = figure(1, T, figsize=(4 * T, 4), squeeze=False)
    for t, ax in enumerate(axes[0], 1):
        xy = np.array(clock["points"][t - 1])
        ax.scatter(xy[:, 0], xy[:, 1], s=10, c=np.arange(len(xy)), cmap="twilight")
        label_outside(ax, xy, max(1, len(xy) // 16))
        frac = partial["steps"][t - 1]["fraction_explained"]
        ax.set(aspect="equal", xticks=[], yticks=[],
               title=f"h_{t} by s_{t}" + (f" ({100 * frac:.0f}% explained by s_{t})" if frac is not None else ""))
    fig.suptitle(f"the clock of the running sum, frequency {clock['frequency']}")
    return save(fig, path)
