"""Training settings: one dataclass, the named presets, and loading from JSON or TOML.

Precedence, lowest first: the preset, then a config file, then command-line flags.
"""
import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path

from tinymod.model.backend import BACKENDS
from tinymod.errors import TinymodError
from tinymod.model.gated import gate_count
from tinymod.model.rnn import ACTIVATIONS, CELLS, DTYPES
from tinymod.model.limits import EVAL_BATCH, MAX_EXAMPLES, check_memory, tuples_fit
from tinymod.training.runs import read_regular, unique_keys

MAX_INT = 2 ** 31 - 1      # sizes, steps and intervals above this are typos, not settings


@dataclass(frozen=True)
class TrainConfig:
    p: int = 113                # modulus: tokens and answers are residues 0..p-1
    frac: float = 0.3           # fraction of all p**seq_len tuples used for training
    seq_len: int = 2            # tokens summed (2: a + b)
    d_embed: int = 128          # D, embedding width
    d_hidden: int = 128         # H, hidden width
    cell: str = "rnn"           # rnn (vanilla), gru or lstm
    activation: str | None = "relu"     # relu or tanh; None (not applicable) for a gated cell
    lr: float = 1e-3            # AdamW learning rate
    weight_decay: float = 1.0   # AdamW decoupled weight decay
    grokfast_lambda: float = 0.0    # Grokfast's amplification of the slow gradient (0: off)
    grokfast_alpha: float = 0.98    # Grokfast's moving-average decay
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-8
    steps: int = 40_000         # optimiser steps
    batch_size: int | None = None   # None: full batch
    eval_every: int = 100       # steps between evaluations (one metrics.jsonl line each)
    checkpoint_every: int = 1000    # steps between checkpoints
    snapshot_every: int | None = None   # steps between parameter snapshots (None: auto, 0: none)
    stop_at: float | None = None    # stop once test accuracy reaches this (None: never)
    stop_after_grok: float | None = None   # stop at this multiple of the grok step (None: never)
    seed: int = 0               # initialisation, split and minibatch order
    dtype: str = "float32"
    backend: str = "numpy"
    threads: int | None = None  # block threads, one BLAS thread each (None: every core, fastest here)
    preset: str = "paper"

    def validate(self):
        """Raise TinymodError naming the first setting that is out of range."""
        checks = [
            (self.p >= 2, f"p must be at least 2, got {self.p}"),
            (0 < self.frac < 1, f"frac must lie strictly between 0 and 1, got {self.frac}"),
            (self.seq_len >= 1, f"seq-len must be at least 1, got {self.seq_len}"),
            (self.d_embed >= 1, f"d-embed must be positive, got {self.d_embed}"),
            (self.d_hidden >= 1, f"d-hidden must be positive, got {self.d_hidden}"),
            (self.cell in CELLS, f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}"),
            (self.activation in ACTIVATIONS if self.cell == "rnn" else self.activation is None,
             f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}"
             if self.cell == "rnn" else f"activation applies to the vanilla cell only; a "
             f"{self.cell} has its own gates (sigmoid and tanh): drop activation {self.activation!r}"),
            (self.dtype in DTYPES, f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}"),
            (self.backend in BACKENDS,
             f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}"),
            (self.lr > 0 and math.isfinite(self.lr), f"lr must be positive, got {self.lr}"),
            (0 <= self.weight_decay < math.inf, f"weight-decay must be finite and non-negative, got {self.weight_decay}"),
            (self.grokfast_lambda >= 0 and math.isfinite(self.grokfast_lambda),
             f"grokfast-lambda must be non-negative, got {self.grokfast_lambda}"),
            (0 <= self.grokfast_alpha < 1, f"grokfast-alpha must lie in [0, 1), got {self.grokfast_alpha}"),
            (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1,
             f"beta1 and beta2 must lie in [0, 1), got {self.beta1}, {self.beta2}"),
            (0 < self.eps < math.inf, f"eps must be finite and positive, got {self.eps}"),
            (self.steps >= 1, f"steps must be positive, got {self.steps}"),
            (self.batch_size is None or self.batch_size >= 1,
             f"batch-size must be positive, got {self.batch_size}"),
            (self.eval_every >= 1, f"eval-every must be positive, got {self.eval_every}"),
            (self.checkpoint_every >= 1,
             f"checkpoint-every must be positive, got {self.checkpoint_every}"),
            (self.snapshot_every is None or self.snapshot_every >= 0,
             f"snapshot-every must be 0 (none) or positive, got {self.snapshot_every}"),
            (self.stop_at is None or 0 < self.stop_at <= 1,
             f"stop-at must lie in (0, 1], got {self.stop_at}"),
            (self.stop_after_grok is None or 1 <= self.stop_after_grok < math.inf,
             f"stop-after-grok must be a finite multiple of at least 1, got {self.stop_after_grok}"),
            (self.seed >= 0, f"seed must be non-negative, got {self.seed}"),
            (self.threads is None or self.threads >= 1, f"threads must be positive, got {self.threads}"),
            (tuples_fit(self.p, self.seq_len),
             f"p**seq-len = {self.p}**{self.seq_len} tuples is more than {MAX_EXAMPLES:,}"),
        ]
        for ok, message in checks:
            if not ok:
                raise TinymodError(message)
        for name in ("p", "seq_len", "d_embed", "d_hidden", "steps", "batch_size", "eval_every",
                     "checkpoint_every", "snapshot_every", "threads", "seed"):
            value = getattr(self, name)
            limit = 2 ** 63 - 1 if name == "seed" else MAX_INT
            if value is not None and value > limit:
                raise TinymodError(f"{name.replace('_', '-')} must be at most {limit:,}, got a number with "
                                   f"{len(str(value))} digits")
        n = self.p ** self.seq_len
        n_train = round(self.frac * n)
        if not 0 < n_train < n:
            raise TinymodError(f"frac {self.frac} of {n} tuples leaves an empty train or test set")
        check_memory(self.memory_bytes(), f"training p = {self.p}, seq-len {self.seq_len}, "
                                          f"H = {self.d_hidden} on {n_train:,} examples a step")
        return self

    def memory_bytes(self):
        """What a training step and an evaluation really allocate, roughly: the (B, p)
        logits and their gradient, the per-example hidden states and their gradients,
        an evaluation batch's logits, the token tables, and the parameters with their
        gradients and two AdamW moments."""
        item = 4 if self.dtype == "float32" else 8
        n = self.p ** self.seq_len
        n_train = round(self.frac * n)
        B = min(self.batch_size or n_train, n_train)
        E = min(EVAL_BATCH, max(n_train, n - n_train))
        H, T, p = self.d_hidden, self.seq_len, self.p
        G = gate_count(self.cell)
        params = p * self.d_embed + G * H * self.d_embed + G * H * H + 2 * G * H + p * H + p
        per_step = 2 * B * p + B * H * (T + 2) * (3 * G if G > 1 else 1)   # a gated step keeps its gates
        per_eval = 2 * E * p + E * H * T
        return item * (per_step + per_eval + 4 * params) + 8 * n * (T + 1)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return dataclasses.asdict(self)


FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))

PRESETS = {
    # The standard grokking recipe. Slow to generalise: see docs/training.md.
    "paper": TrainConfig(preset="paper"),
    # The paper's model and p, with half of the pairs to learn from and lr 3e-3: groks in
    # about a thousand steps (docs/training.md), then trains on so the structure sharpens.
    "default": TrainConfig(preset="default", frac=0.5, lr=3e-3, steps=5000),
    # Three tokens, (a + b + c) mod p: all 31**3 triples, 30% to learn from; groks in about
    # 2,600 steps, then trains on so the structure sharpens (docs/beyond.md).
    "sum3": TrainConfig(preset="sum3", p=31, seq_len=3, frac=0.3, lr=3e-3, steps=5000),
    # A small p for tests and lectures: groks in seconds.
    "quick": TrainConfig(preset="quick", p=31, frac=0.7, d_embed=64, d_hidden=64, lr=3e-3,
                         steps=6000, eval_every=50, checkpoint_every=1000),
}


def build(preset_name, settings):
    """The preset's config with `settings` over it. A gated cell records activation as None
    (not applicable); one given explicitly with a gated cell is refused in `validate`."""
    config = preset(preset_name).replace(**settings)
    if config.cell != "rnn" and "activation" not in settings:
        config = config.replace(activation=None)
    return config


def preset(name):
    if not isinstance(name, str) or name not in PRESETS:
        raise TinymodError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def read_table(path, what="config file"):
    """The top-level table of a JSON or TOML file (by suffix), keys as option names (- or _)."""
    path = Path(path)
    try:
        text = read_regular(path, what).decode("utf-8")
    except FileNotFoundError as e:
        raise TinymodError(f"cannot read {what} {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise TinymodError(f"{what} {path} is not UTF-8 text: byte {e.start} cannot be read") from None
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:   # Python 3.10: the same parser, installed as tomli
                import tomli as tomllib
            raw = tomllib.loads(text)
        else:
            raw = json.loads(text, object_pairs_hook=unique_keys)     # a key twice is refused
    except ValueError as e:   # json.JSONDecodeError and tomllib.TOMLDecodeError
        raise TinymodError(f"{what} {path} is not valid "
                           f"{'TOML' if path.suffix.lower() == '.toml' else 'JSON'}: {e}") from None
    except RecursionError:
        raise TinymodError(f"{what} {path} nests too deeply to be a table of settings") from None
    if not isinstance(raw, dict):
        raise TinymodError(f"{what} {path} must hold a table of settings")
    return {key.replace("-", "_"): value for key, value in raw.items()}


def read_config_file(path):
    """Settings from a JSON or TOML file (by suffix), keys as option names (- or _)."""
    settings = read_table(path)
    unknown = sorted(set(settings) - set(FIELDS))
    if unknown:
        raise TinymodError(f"config file {path} has unknown keys: {', '.join(unknown)}")
    return settings


def coerce(settings):
    """Check each value's type against the dataclass field (ints stay ints, etc.)."""
    out = {}
    hints = typing.get_type_hints(TrainConfig)
    for name, value in settings.items():
        kinds = typing.get_args(hints[name]) or (hints[name],)     # int | None -> (int, NoneType)
        kind = kinds[0]
        if value is None and type(None) in kinds:
            out[name] = None
        elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, kind) and not isinstance(value, bool):
            out[name] = value
        else:
            raise TinymodError(f"setting {name} must be {kind.__name__}, got {value!r}")
    return out
