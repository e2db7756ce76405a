"""The `tinymod` command line: thin click commands that build a config and call the library.

Heavy modules (numpy's maths, numba, matplotlib) are imported inside the commands, so
`tinymod --help` starts fast.
"""
import click

from tinymod import __version__


class _Errors(click.Group):
    """Turn TinymodError (a user's mistake) into `Error: ...` and exit status 1."""

    def invoke(self, ctx):
        from tinymod.errors import TinymodError
        try:
            return super().invoke(ctx)
        except TinymodError as e:
            raise click.ClickException(str(e)) from None


@click.group(cls=_Errors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tinymod")
def main():
    """tinymod: watch a hand-written RNN grok modular addition, then find the Fourier
    algorithm inside it."""


def _default(name):
    from tinymod.config import PRESETS
    value = getattr(PRESETS["default"], name)
    return {"batch_size": "full batch", "stop_at": "off"}.get(name, value) if value is None else value


TRAIN_OPTIONS = [
    # (flag, type, help); defaults come from the preset, so each help names the default's
    ("--p", int, "modulus p: tokens and answers are residues 0..p-1"),
    ("--frac", float, "fraction of all p**seq-len tuples used for training"),
    ("--seq-len", int, "number of tokens summed (2 is a + b)"),
    ("--d-embed", int, "embedding width D"),
    ("--d-hidden", int, "hidden width H"),
    ("--activation", str, "relu or tanh"),
    ("--lr", float, "AdamW learning rate"),
    ("--weight-decay", float, "AdamW decoupled weight decay"),
    ("--beta1", float, "AdamW beta1"),
    ("--beta2", float, "AdamW beta2"),
    ("--eps", float, "AdamW epsilon"),
    ("--steps", int, "optimiser steps"),
    ("--batch-size", int, "examples per step (full batch when not given)"),
    ("--eval-every", int, "steps between evaluations (lines of metrics.jsonl)"),
    ("--checkpoint-every", int, "steps between checkpoints"),
    ("--stop-at", float, "stop once test accuracy reaches this fraction, e.g. 0.99"),
    ("--seed", int, "seed of the initialisation, the split and the minibatches"),
    ("--dtype", str, "float32 or float64"),
    ("--backend", str, "array backend (numpy)"),
]


def _train_options(fn):
    for flag, kind, text in reversed(TRAIN_OPTIONS):
        name = flag[2:].replace("-", "_")
        fn = click.option(flag, name, type=kind, default=None,
                          help=f"{text}  [default preset: {_default(name)}]")(fn)
    return fn


@main.command()
@click.option("--preset", "preset_name", default="default", show_default=True,
              type=click.Choice(["default", "paper", "quick"]),
              help="default: the paper's model, tuned to grok in minutes; paper: the "
                   "standard recipe (slow); quick: a small p for tests and lectures")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="JSON or TOML file of settings (keys as option names); flags override it")
@click.option("--out", type=click.Path(file_okay=True), default=None,
              help="run folder  [default: runs/<preset>]")
@click.option("--resume", is_flag=True, help="continue the run in --out from its newest checkpoint")
@click.option("--overwrite", is_flag=True, help="replace the run already in --out")
@_train_options
def train(preset_name, config_file, out, resume, overwrite, **flags):
    """Train the RNN on (a + b) mod p and write a run folder.

    The folder holds config.json, metrics.jsonl, checkpoints/, model.npz and the
    figures curves.png and weight_norm.png. Ctrl-C saves a checkpoint; --resume
    continues from it and ends bit-identical to an uninterrupted run.
    """
    from tinymod import config as cfg
    from tinymod import train as training

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    settings = cfg.read_config_file(config_file) if config_file else {}
    settings.update({k: v for k, v in flags.items() if v is not None})
    settings = cfg.coerce(settings)
    config = cfg.preset(settings.pop("preset", preset_name)).replace(**settings)
    out = out or f"runs/{config.preset}"
    try:
        summary = training.run(config, out, resume, overwrite, overrides=tuple(settings),
                               progress=training.Progress())
    except training.Interrupted as e:
        click.echo(f"{e}. Resume with: tinymod train --out {out} --resume", err=True)
        raise SystemExit(130) from None
    _print_summary(summary)


def _print_summary(s):
    grok = (f"test accuracy first reached 99% at step {s['grok_step']} ({s['grok_seconds']:.0f} s)"
            if s["grok_step"] is not None else "test accuracy has not reached 99% yet")
    click.echo(f"run: {s['out']}\n"
               f"step {s['step']} after {s['seconds']:.0f} s: "
               f"train accuracy {100 * s['train_acc']:.1f}%, test accuracy {100 * s['test_acc']:.1f}% "
               f"(test loss {s['test_loss']:.3g})\n{grok}")
