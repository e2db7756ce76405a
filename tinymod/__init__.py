"""tinymod: a vanilla RNN that groks modular addition, written by hand.

The package is layered, and data flows one way, down this list:

    cli, course          the faces: commands, and the course's helpers
    scale/               sweeps on dask.distributed, the step benchmark
    reports/             the analysis pipeline (contract 5), the claims, report.md, figures (the course's
                         pictures too), progress lines
    analysis/            Fourier basis, tables, fits, key sets, svd, ablation, progress measures
    training/            settings, the training loop, the run folder (contract 3), checkpoints
    model/               backend, data, the RNN, the gated cells, kernels, blocks, reference, AdamW

Every module is also importable by its flat name, the public API the README and the
lectures use: `from tinymod import rnn`, `from tinymod.kernels import softmax_xent`. The
page docs/contracts.md fixes the model equations, parameter names and file formats.
"""
import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

LAYOUT = {
    "model": ("backend", "data", "rnn", "gated", "kernels", "blocks", "reference", "optim"),
    "training": ("config", "train", "runs", "checkpoint"),
    "analysis": ("fourier", "tabulate", "fits", "keysets", "clock_pizza", "svd", "ablate", "partial_sums", "progress",
                 "construct"),
    "reports": ("pipeline", "claims", "report", "plots", "pictures", "speak"),
    "scale": ("sweep", "sweep_results", "bench", "bench_table"),
}
LAYER_OF = {module: layer for layer, modules in LAYOUT.items() for module in modules}
RENAMED = {"rank": "svd"}          # older flat names of renamed modules


class _FlatNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves `tinymod.<module>` to `tinymod.<layer>.<module>`: the same module object, so
    both names see the same state. It answers for those names only."""

    def find_spec(self, name, path=None, target=None):
        package, _, module = name.partition(".")
        if package == __name__ and RENAMED.get(module, module) in LAYER_OF:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        module = RENAMED.get(spec.name.partition(".")[2], spec.name.partition(".")[2])
        return importlib.import_module(f"{__name__}.{LAYER_OF[module]}.{module}")

    def exec_module(self, module):
        """Nothing to run: the layered module was executed when it was imported."""


if not any(isinstance(finder, _FlatNames) for finder in sys.meta_path):
    sys.meta_path.insert(0, _FlatNames())      # first, so that no stray flat file can shadow a name
