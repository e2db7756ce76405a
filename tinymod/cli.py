"""The `tinymod` command line: thin click commands that build a config and call the library.

Heavy modules (numpy's maths, numba, matplotlib) are imported inside the commands, so
`tinymod --help` starts fast.
"""
import os

import click

from tinymod import __version__
from tinymod.analysis.ablate import SITES
from tinymod.model.backend import BACKENDS
from tinymod.model.rnn import ACTIVATIONS, CELLS, DTYPES
from tinymod.training.config import PRESETS
from tinymod.analysis.keysets import THRESHOLD as SPECTRAL_THRESHOLD
from tinymod.errors import TinymodError


class _Errors(click.Group):
    """Turn TinymodError (a user's mistake) and OSError (the system's refusal) into one line,
    `Error: ...`, and exit status 1."""

    def invoke(self, ctx):
        import warnings
        with warnings.catch_warnings():      # restores warnings.showwarning when the command ends
            warnings.showwarning = lambda message, *_, **__: click.echo(f"Warning: {message}", err=True)
            try:
                return super().invoke(ctx)
            except TinymodError as e:
                raise click.ClickException(str(e)) from None
            except OSError as e:             # the system's refusal where no layer expected one
                where = f"{e.filename}: " if e.filename else ""
                raise click.ClickException(f"{where}{e.strerror or e}; tinymod stopped there, and every "
                                           f"file it wrote is whole (each is written atomically)") from None


class IntList(click.ParamType):
    """Comma-separated integers (`4,11,23`), at least one, each at least `least` when given;
    a mistake is click's BadParameter (usage line, exit status 2)."""
    name = "list"

    def __init__(self, least=None, most=None):
        self.least, self.most = least, most

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            items = [int(v) for v in str(value).split(",") if v.strip()]
        except ValueError:
            self.fail(f"must be comma-separated integers, got {value!r}", param, ctx)
        if not items:
            self.fail(f"names no integer, got {value!r}", param, ctx)
        if self.least is not None and min(items) < self.least:
            self.fail(f"every value must be at least {self.least}, got {value!r}", param, ctx)
        if self.most is not None and max(items) > self.most:
            self.fail(f"every value must be at most {self.most}, got {value!r}", param, ctx)
        return items


@click.group(cls=_Errors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tinymod")
def main():
    """tinymod: watch a hand-written RNN grok modular addition, then find the Fourier
    algorithm inside it."""


def _default(name):
    value = getattr(PRESETS["default"], name)
    return {"batch_size": "full batch", "stop_at": "off", "stop_after_grok": "off", "threads": "every core",
            "snapshot_every": "50 evenly spaced plus 12 per decade"}.get(name, value) \
        if value is None else value


TRAIN_OPTIONS = [
    # (flag, type, help); defaults come from the preset, so each help names the default's
    ("--p", int, "modulus p: tokens and answers are residues 0..p-1"),
    ("--frac", float, "fraction of all p**seq-len tuples used for training"),
    ("--seq-len", int, "number of tokens summed (2 is a + b)"),
    ("--d-embed", int, "embedding width D"),
    ("--d-hidden", int, "hidden width H"),
    ("--cell", click.Choice(CELLS), "recurrent cell: rnn (vanilla), gru or lstm (PyTorch's equations)"),
    ("--activation", click.Choice(ACTIVATIONS), "the vanilla cell's activation: relu or tanh"),
    ("--lr", float, "AdamW learning rate"),
    ("--weight-decay", float, "AdamW decoupled weight decay"),
    ("--beta1", float, "AdamW beta1"),
    ("--beta2", float, "AdamW beta2"),
    ("--eps", float, "AdamW epsilon"),
    ("--grokfast-lambda", float, "Grokfast: amplify the gradient's moving average by this (0: off)"),
    ("--grokfast-alpha", float, "Grokfast: the moving average's decay"),
    ("--steps", int, "optimiser steps"),
    ("--batch-size", int, "examples per step (full batch when not given)"),
    ("--eval-every", int, "steps between evaluations (lines of metrics.jsonl)"),
    ("--checkpoint-every", int, "steps between checkpoints"),
    ("--snapshot-every", int, "steps between parameter snapshots for tinymod progress (0: none)"),
    ("--stop-at", float, "stop once test accuracy reaches this fraction, e.g. 0.99"),
    ("--stop-after-grok", float, "stop at this multiple of the grok step (the first evaluation at "
                                 "99% test accuracy), e.g. 3: trained on until the weights settle"),
    ("--seed", int, "seed of the initialisation, the split and the minibatches"),
    ("--dtype", click.Choice(DTYPES), "float32 or float64"),
    ("--backend", click.Choice(BACKENDS), "array backend: numpy, or cupy on an NVIDIA GPU"),
    ("--threads", int, "threads running the step's example blocks, each with one BLAS thread "
                        "(every core when not given; see make bench)"),
]


def _train_options(fn):
    for flag, kind, text in reversed(TRAIN_OPTIONS):
        name = flag[2:].replace("-", "_")
        fn = click.option(flag, name, type=kind, default=None,
                          help=f"{text}  [default preset: {_default(name)}]")(fn)
    return fn


@main.command("train")
@click.option("--preset", "preset_name", default="default", show_default=True,
              type=click.Choice(list(PRESETS)),
              help="default: the paper's model, tuned to grok in minutes; paper: the "
                   "standard recipe (slow); quick: a small p for tests and lectures; sum3: "
                   "three tokens, (a + b + c) mod 31")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="JSON or TOML file of settings (keys as option names); flags override it")
@click.option("--out", type=click.Path(file_okay=True), default=None,
              help="run folder  [default: runs/<preset>]")
@click.option("--resume", is_flag=True, help="continue the run in --out from its newest checkpoint")
@click.option("--overwrite", is_flag=True, help="replace the run already in --out")
@_train_options
def train_command(preset_name, config_file, out, resume, overwrite, **flags):
    """Train the RNN on (a + b) mod p and write a run folder.

    The folder holds config.json, metrics.jsonl, checkpoints/, model.npz and the
    figures curves.png and weight_norm.png. Ctrl-C saves a checkpoint; --resume
    continues from it and ends bit-identical to an uninterrupted run.
    """
    import shlex
    from tinymod.training import config, train
    from tinymod.reports.speak import ProgressBar

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    settings = config.read_config_file(config_file) if config_file else {}
    settings.update({k: v for k, v in flags.items() if v is not None})
    settings = config.coerce(settings)
    from_file = settings.pop("preset", None)          # a config file may name the preset ...
    source = click.get_current_context().get_parameter_source("preset_name")
    if from_file and source is not click.core.ParameterSource.COMMANDLINE:
        preset_name = from_file                       # ... unless --preset was given
    chosen = config.build(preset_name, settings)
    out = out or f"runs/{chosen.preset}"
    try:
        summary = train.run(chosen, out, resume, overwrite, overrides=tuple(settings),
                            bar=ProgressBar())
    except train.Interrupted as e:
        click.echo(f"{e}. Resume with: tinymod train --out {shlex.quote(str(out))} --resume", err=True)
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        click.echo(f"aborted by a second Ctrl-C; every file is whole. Resume from the newest "
                   f"checkpoint with: tinymod train --out {shlex.quote(str(out))} --resume", err=True)
        raise SystemExit(130) from None
    _print_summary(summary)
    from tinymod.training import machine
    kernels = machine.blas_kernels(out)
    if chosen.backend == "numpy" and kernels != machine.REFERENCE_KERNELS:
        click.echo(f"note: this run used the BLAS kernels {kernels or 'of an unrecorded BLAS'}; the README's "
                   f"numbers came from {machine.REFERENCE_KERNELS} (on x86-64 with AVX2 and FMA, "
                   f"OPENBLAS_CORETYPE=Haswell gives them bit for bit). Other kernels give another, "
                   f"equally valid sample.", err=True)


def _print_summary(s):
    grok = (f"test accuracy first reached 99% at step {s['grok_step']} ({s['grok_seconds']:.1f} s)"
            if s["grok_step"] is not None else "test accuracy has not reached 99% yet")
    click.echo(f"run: {s['out']}\n"
               f"step {s['step']} after {s['seconds']:.0f} s: "
               f"train accuracy {100 * s['train_acc']:.1f}%, test accuracy {100 * s['test_acc']:.1f}% "
               f"(test loss {s['test_loss']:.3g})\n{grok}")


def _load_model(source, backend_name="numpy", out=None):
    """(params on the backend, config, output folder: `out`, else beside the model) from a run
    folder or a checkpoint file. Writing into a run's own folder holds its lock from before the
    model is read to the command's end: no training or --overwrite replaces the model."""
    from pathlib import Path
    from tinymod.model import backend, limits
    from tinymod.training import checkpoint, runs
    from tinymod.training.lock import RunLock
    xp = backend.get(backend_name)
    path = checkpoint.resolve_model_path(source)
    target = Path(out) if out else runs.analysis_folder(path)
    if (target / runs.CONFIG).is_file() and not target.is_symlink():
        click.get_current_context().call_on_close(RunLock(target, doing="analysed").acquire().release)
    params, config, _ = checkpoint.load(path, expect=checkpoint.run_identity(path),
                                        check=lambda c: limits.check_analysis(c["p"], c["seq_len"], c["d_hidden"]))
    folder = runs.output_folder(out, target)
    return {k: backend.asarray(xp, v) for k, v in params.items()}, config, folder


THRESHOLD = click.option(
    "--threshold", type=click.FloatRange(0, 1, min_open=True), default=SPECTRAL_THRESHOLD, show_default=True,
    help="key frequencies hold at least this fraction of the strongest frequency's mean energy share")
OUT = click.option("--out", type=click.Path(), help="folder for the outputs  [default: beside the model]")
BACKEND = click.option("--backend", "backend_name", type=click.Choice(list(BACKENDS)), default=BACKENDS[0],
                       show_default=True, help="array backend for evaluating the model over all pairs")


@main.command("fourier")
@click.argument("source", metavar="RUN_OR_CHECKPOINT")
@OUT
@THRESHOLD
@BACKEND
def fourier_command(source, out, threshold, backend_name):
    """Find the Fourier multiplication inside a trained (or constructed) model.

    Writes fourier.json (spectra, key frequencies, energy shares, fit errors, neurons) and
    the figures fourier_spectra.png, hidden_spectrum_2d.png, neurons_per_frequency.png
    and clock.png, and prints a summary.
    """
    from tinymod.reports import console, pipeline

    params, config, folder = _load_model(source, backend_name, out)
    click.echo(console.fourier_text(pipeline.run_fourier(params, config, folder, threshold), folder))


@main.command("svd")
@click.argument("source", metavar="RUN_OR_CHECKPOINT")
@OUT
@THRESHOLD
def svd_command(source, out, threshold):
    """Singular values of E, W_ih, W_hh, W_out and of the tables a residue sees; energy in the
    top r, effective rank at 90% and 99%, and the frequency of each top singular vector.
    Writes svd.json and singular_values.png."""
    from tinymod.analysis import keysets
    from tinymod.reports import console, pipeline

    params, config, folder = _load_model(source, out=out)
    key, _ = keysets.weight_key_frequencies(params, threshold)
    click.echo(console.svd_text(pipeline.run_svd(params, config, folder, key), folder))


@main.command("ablate")
@click.argument("source", metavar="RUN_OR_CHECKPOINT")
@OUT
@THRESHOLD
@click.option("--site", type=click.Choice(SITES), default="both",
              show_default=True, help="where frequencies are projected out: the embedding E, "
              "the readout W_out and b_out, or both (so no path can carry them)")
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True,
              help="random orders of the key frequencies, as a control")
@BACKEND
def ablate_command(source, out, threshold, site, seeds, backend_name):
    """Remove Fourier frequencies and measure accuracy and loss on all pairs and the test
    split: every frequency alone, then the key frequencies one after another, beside
    controls. Writes ablation.json, ablation_single.png and ablation_cumulative.png."""
    from tinymod.analysis import keysets
    from tinymod.reports import console, pipeline

    params, config, folder = _load_model(source, backend_name, out)
    key, strength = keysets.weight_key_frequencies(params, threshold)
    click.echo(console.ablation_text(pipeline.run_ablate(params, config, folder, key, strength, site, seeds), folder))


@main.command("report")
@click.argument("source", metavar="RUN")
@THRESHOLD
@BACKEND
def report_command(source, threshold, backend_name):
    """Run fourier, svd and ablate on a run and write report.md beside it: the training
    curves, every figure, and our numbers beside the paper's claims."""
    from tinymod.reports import console, pipeline
    from tinymod.reports.speak import Voice
    from tinymod.training import runs
    from tinymod.training import train

    params, config, folder = _load_model(source, backend_name)
    rows = runs.read_metrics(folder / runs.METRICS)
    summary = train.summarize(rows, folder) if rows else None
    voice = Voice(lambda line: click.echo(line, err=True))
    path, analyses = pipeline.run_report(params, config, folder, summary, threshold, voice=voice)
    voice.finish()
    click.echo(console.claims_text(analyses["fourier"], analyses["claims"]))
    click.echo(f"wrote {path}")


@main.command("progress")
@click.argument("source", metavar="RUN")
@OUT
def progress_command(source, out):
    """Follow the Fourier circuit through training: measure every parameter snapshot of a run
    (losses and accuracies, restricted and excluded loss at the final model's in-use key
    frequencies, weight norms, key energy, sparsity, low rank) and find the phases
    memorisation, circuit formation and cleanup. Writes progress.json and progress.png."""
    from pathlib import Path
    from tinymod.reports import console, pipeline
    from tinymod.training import checkpoint, runs
    from tinymod.analysis.keysets import in_use_of
    from tinymod.reports.speak import Voice

    folder = Path(source)
    if not (folder / runs.CONFIG).is_file() or not (folder / runs.MODEL).is_file():
        raise TinymodError(f"{folder} is not a finished tinymod run (it needs config.json and model.npz)")
    checkpoint.read_snapshots(folder, {})      # none: say so before the costlier in-use key frequencies
    params, config, target = _load_model(folder, out=out)
    voice = Voice(lambda line: click.echo(line, err=True))
    voice.stage("the final model's in-use key frequencies")
    key = in_use_of(params, config["activation"], config["seq_len"])
    found = pipeline.run_progress(folder, config, key, target, voice)
    voice.finish()
    click.echo(console.progress_text(found, target))


@main.command("sweep")
@click.argument("grid", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), required=True, help="sweep folder: one run folder per combination")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="worker processes of the local cluster  [default: one per core]")
@click.option("--scheduler", default=None, help="address of a running dask scheduler (tcp://host:8786) "
              "to use instead of a local cluster")
@click.option("--no-report", "no_report", is_flag=True, help="train only; skip each run's analysis")
@click.option("--axes", default=None, help="two settings for the phase diagram, e.g. frac,weight_decay")
@click.option("--max-runs", type=click.IntRange(min=1), default=5000, show_default=True,
              help="refuse a grid with more combinations than this")
@click.option("--connect-timeout", type=click.FloatRange(0, min_open=True), default=30, show_default=True,
              help="seconds for --scheduler's first worker to be there")
def sweep_command(grid, out, workers, scheduler, no_report, axes, max_runs, connect_timeout):
    """Run every combination of a grid of settings on dask.distributed (a local cluster, one
    worker per core, or --scheduler), each as an ordinary run folder under --out, followed
    by its report. Writes sweep.json, sweep.csv and sweep_report.md (the paper's claims over
    seeds, the grok steps, a phase diagram with --axes). Calling it again completes what is
    missing and trains nothing twice."""
    from pathlib import Path
    from tinymod.scale import sweep as sweeping
    from tinymod.training import runs
    axes_list = [a.strip().replace("-", "_") for a in axes.split(",")] if axes else None
    if axes_list is not None and len(axes_list) != 2:
        raise click.UsageError("--axes takes two settings, e.g. frac,weight_decay")
    entries = sweeping.run(grid, out, workers, scheduler, not no_report, axes_list, max_runs=max_runs,
                           echo=lambda line: click.echo(line, err=True), connect_timeout=connect_timeout)
    click.echo((Path(out) / runs.SWEEP_REPORT_MD).read_text())
    failed = sum(e["status"] != "ok" for e in entries)
    click.echo(f"wrote {Path(out) / runs.SWEEP_JSON}, {runs.SWEEP_CSV} and {runs.SWEEP_REPORT_MD}")
    if failed:
        raise TinymodError(f"{failed} of {len(entries)} runs failed (their errors are in {runs.SWEEP_REPORT_MD})")


@main.command("bench")
@click.option("--threads", type=IntList(least=1, most=os.cpu_count() or 1), default=None,
              help="BLAS thread counts to try, comma-separated, at most the number of cores  [default: 1 up to it]")
@click.option("--repeats", type=click.IntRange(min=3), default=30, show_default=True,
              help="timed repetitions per number (the median is reported)")
def bench_command(threads, repeats):
    """Time one full-batch training step on the paper's setting (p = 113, 30% of pairs,
    D = H = 128): ours (forward, backward, AdamW) beside a plain PyTorch RNN when PyTorch
    is installed, the machine's matmul rate, and where our time goes."""
    import tempfile
    from tinymod.scale import bench, wait

    counts = threads if threads is not None else list(range(1, (os.cpu_count() or 1) + 1))
    results = [bench.run_worker(n, repeats) for n in counts]
    best = min(results, key=lambda r: r["rows"]["float32"]["ours"]["step"])["rows"]["float32"]
    with tempfile.TemporaryDirectory() as scratch:
        waits = {"allocation": bench.allocation_by_seq_len(), "best_row": best,
                 "grok": wait.time_to_grok(os.path.join(scratch, "default"))}
    click.echo(bench.render(results, bench.startup(), waits))


@main.command("construct")
@click.option("--p", type=int, required=True, help="modulus")
@click.option("--freqs", type=IntList(), required=True, help="frequencies to plant, comma-separated (e.g. 4,11,23)")
@click.option("--out", type=click.Path(), required=True, help="folder for model.npz")
@click.option("--phases", type=int, default=16, show_default=True, help="phases per frequency")
@click.option("--form", type=click.Choice(["clock", "pizza"]), default="clock", show_default=True,
              help="the algorithm: clock (Fourier multiplication; its logits do not depend on a - b) or "
                   "pizza (Zhong et al.: amplitude |cos(w(a - b)/2)|)")
@click.option("--pizza-share", type=click.FloatRange(0, 1), default=None,
              help="build a mix: the Pizza's share of the readout beside a Clock's (overrides --form)")
@click.option("--offsets", type=click.IntRange(min=1), default=16, show_default=True,
              help="offsets per phase of the Clock's units (1 offset makes a Pizza)")
@click.option("--scale", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="multiply the logits: the model's confidence, not its answers. At 1 the loss is "
                   "near ln p and no single frequency's removal doubles it (none counts as in use); "
                   "30 or more makes it confident, as a trained model is")
@click.option("--overwrite", is_flag=True, help="replace an existing model.npz in --out")
def construct_command(p, freqs, out, phases, form, pizza_share, offsets, scale, overwrite):
    """Build, without training, an RNN that adds mod p with exactly the given frequencies,
    by the Clock (Fourier multiplication), the Pizza or a mix of the two; check it classifies
    every pair, and save it as a checkpoint (OUT/model.npz) that every analysis command reads."""
    from tinymod.training import runs
    from tinymod.analysis import construct

    params, accuracy = construct.build(p, freqs, phases, offsets, scale=scale, form=form, pizza_share=pizza_share)
    share = construct.pizza_share_of(form, pizza_share)
    folder = runs.output_folder(out, None)
    path = folder / runs.MODEL
    if path.exists() and not overwrite:
        raise TinymodError(f"{path} exists; pass --overwrite to replace it")
    construct.save(path, params, freqs, phases, offsets, scale, share)
    what = ("a Clock" if share == 0 and offsets > 1 else "a Pizza" if share == 1 or offsets == 1
            else f"a mix, Pizza share {share:g}")
    click.echo(f"wrote {path}: {what}, p = {p}, frequencies {sorted(set(freqs))}, H = {params['W_hh'].shape[0]}, "
               f"accuracy on all pairs {100 * accuracy:.1f}%")
