"""matplotlib figures, drawn with the Agg backend (no display needed) and saved as PNG.

Each function takes plain data (lists, NumPy arrays) and a path; none computes anything
beyond what it draws.
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)


def _column(rows, key):
    return [row[key] for row in rows]


def _steps(rows):
    # log-x needs positive steps: the step-0 evaluation is drawn at step 1
    return [max(row["step"], 1) for row in rows]


def training_curves(rows, path, title=""):
    """Loss (log-log) and accuracy (log-x) of train and test against step.

    Log-scaled steps show grokking best: memorisation happens early, generalisation
    much later, and a linear axis squeezes the first into a sliver.
    """
    steps = _steps(rows)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax_loss.plot(steps, _column(rows, "train_loss"), label="train")
    ax_loss.plot(steps, _column(rows, "test_loss"), label="test")
    ax_loss.set(xscale="log", yscale="log", xlabel="step", ylabel="cross-entropy loss")
    ax_acc.plot(steps, [100 * a for a in _column(rows, "train_acc")], label="train")
    ax_acc.plot(steps, [100 * a for a in _column(rows, "test_acc")], label="test")
    ax_acc.set(xscale="log", xlabel="step", ylabel="accuracy (%)", ylim=(-2, 102))
    for ax in (ax_loss, ax_acc):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(title or "training curves")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def weight_norm(rows, path, title=""):
    """The L2 norm of all parameters against step (weight decay shrinks it as the model
    trades memorisation for the Fourier algorithm)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(_steps(rows), _column(rows, "weight_norm"))
    ax.set(xscale="log", xlabel="step", ylabel="weight norm ||θ||₂", title=title or "weight norm")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
