"""Training and the run folder: settings and presets, the training loop, contract 3 (the
folder, the atomic writer, the lock) and contract 4 (checkpoints)."""
