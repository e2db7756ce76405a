"""The model: the array namespace, the data, the RNN's forward and BPTT with their numba kernels
and plain twins, the fixed-block thread pool, the literal reference loops, and AdamW."""
