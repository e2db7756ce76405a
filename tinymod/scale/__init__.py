"""Scale-out and speed: sweeps on dask.distributed and the step benchmark."""
