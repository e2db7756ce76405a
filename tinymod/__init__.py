"""tinymod: a vanilla RNN that groks modular addition, written by hand.

The package is layered, and data flows one way, down this list:

    cli, course          the faces: commands, and the course's helpers
    scale/               sweeps on dask.distributed, the step benchmark
    reports/             the analysis pipeline (contract 5), the claims, report.md, figures (the course's
                         pictures too), progress lines
    analysis/            Fourier basis, tables, fits, key sets, svd, ablation, progress measures
    training/            settings, the training loop, the run folder (contract 3), checkpoints
    model/               backend, data, the RNN, the gated cells, kernels, blocks, reference, AdamW

A module has one name, its path: `from tinymod.model import rnn`,
`from tinymod.model.kernels import softmax_xent`. The page docs/contracts.md fixes the model
equations, parameter names and file formats.
"""
__version__ = "0.1.0"
