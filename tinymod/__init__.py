"""tinymod: a vanilla RNN that groks modular addition, written by hand.

The model (forward and backpropagation through time), AdamW and the data are plain
array code; the hot inner loops are numba kernels with portable array-API twins. The
README's "Contracts" section fixes the model equations, parameter names and file formats.
"""
__version__ = "0.1.0"
