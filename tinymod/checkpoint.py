"""Checkpoints (DESIGN.md contract 3): atomic .npz files, loaded with allow_pickle=False
and validated, with a precise message for each fault.

Layout of one file: the six parameter arrays under their names; `config`, a 0-d string
array of JSON (at least p, d_embed, d_hidden, activation, seq_len, frac, seed, step,
format_version); and the optimiser state under `opt_` keys (`opt_t`, `opt_m_<name>`,
`opt_v_<name>`).
"""
import json
import zipfile
from pathlib import Path

import numpy as np

from tinymod import runs
from tinymod.backend import to_numpy
from tinymod.errors import TinymodError
from tinymod.rnn import ACTIVATIONS, DTYPES, PARAM_NAMES, param_shapes

FORMAT_VERSION = 1
REQUIRED_CONFIG = ("p", "d_embed", "d_hidden", "activation", "seq_len", "frac", "seed",
                   "step", "format_version")


def save(path, params, config, opt_state=None):
    """Write params (+ optimiser state) and `config` (a dict) to `path`, through the one
    atomic writer (runs.atomic_write)."""
    path = Path(path)
    arrays = {name: to_numpy(params[name]) for name in PARAM_NAMES}
    arrays["config"] = np.array(json.dumps({**config, "format_version": FORMAT_VERSION}))
    for key, value in (opt_state or {}).items():
        arrays[f"opt_{key}"] = to_numpy(value)
    return runs.atomic_write(path, lambda f: np.savez(f, **arrays))


def load(path):
    """(params, config, opt_state) from a checkpoint, after validating everything.

    Raises TinymodError saying exactly what is wrong: missing file, not an npz
    (truncated or corrupt), missing or unexpected arrays, bad config, wrong shapes or
    dtypes, non-finite values, an unknown format version.
    """
    path = Path(path)
    if not path.is_file():
        raise TinymodError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise TinymodError(f"{path} is not a readable checkpoint (truncated or corrupt): {e}") from None
    where = f"checkpoint {path}"
    missing = [key for key in (*PARAM_NAMES, "config") if key not in arrays]
    if missing:
        raise TinymodError(f"{where} lacks arrays: {', '.join(missing)}")
    unexpected = [k for k in arrays if k not in PARAM_NAMES and k != "config" and not k.startswith("opt_")]
    if unexpected:
        raise TinymodError(f"{where} has unexpected arrays: {', '.join(sorted(unexpected))}")
    config = _read_config(arrays["config"], where)
    shapes = param_shapes(config["p"], config["d_embed"], config["d_hidden"])
    params = {}
    for name in PARAM_NAMES:
        params[name] = _checked(arrays[name], name, shapes[name], where)
    dtypes = {params[name].dtype for name in PARAM_NAMES}
    if len(dtypes) != 1:
        raise TinymodError(f"{where} mixes dtypes: {', '.join(sorted(map(str, dtypes)))}")
    opt_state = _read_opt_state(arrays, params, where)
    return params, config, opt_state


def _read_config(array, where):
    if array.ndim != 0 or array.dtype.kind != "U":
        raise TinymodError(f"{where}: 'config' must be a 0-d string array of JSON")
    try:
        config = json.loads(str(array))
    except ValueError as e:
        raise TinymodError(f"{where}: 'config' is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise TinymodError(f"{where}: 'config' must be a JSON object")
    missing = [k for k in REQUIRED_CONFIG if k not in config]
    if missing:
        raise TinymodError(f"{where}: config lacks {', '.join(missing)}")
    if config["format_version"] != FORMAT_VERSION:
        raise TinymodError(f"{where} has format_version {config['format_version']!r}; "
                           f"this tinymod reads version {FORMAT_VERSION}")
    for key in ("p", "d_embed", "d_hidden", "seq_len", "step"):
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "step" else 1):
            raise TinymodError(f"{where}: config {key} must be a positive integer, got {value!r}")
    if config["activation"] not in ACTIVATIONS:
        raise TinymodError(f"{where}: unknown activation {config['activation']!r}")
    return config


def _checked(array, name, shape, where):
    if array.shape != tuple(shape):
        raise TinymodError(f"{where}: {name} has shape {array.shape}, expected {tuple(shape)}")
    if array.dtype.name not in DTYPES:
        raise TinymodError(f"{where}: {name} has dtype {array.dtype}, expected float32 or float64")
    bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise TinymodError(f"{where}: {name} holds {bad} non-finite value{'s' if bad > 1 else ''}")
    return array


def _read_opt_state(arrays, params, where):
    keys = [k for k in arrays if k.startswith("opt_")]
    if not keys:
        return None
    state = {"t": arrays.get("opt_t")}
    if state["t"] is None or state["t"].ndim != 0 or state["t"].dtype.kind not in "iu":
        raise TinymodError(f"{where}: optimiser state lacks a scalar integer opt_t")
    dtype = params["E"].dtype
    for name in PARAM_NAMES:
        for moment in ("m", "v"):
            key = f"opt_{moment}_{name}"
            if key not in arrays:
                raise TinymodError(f"{where}: optimiser state lacks {key}")
            state[f"{moment}_{name}"] = _checked(arrays[key], key, params[name].shape, where)
            if arrays[key].dtype != dtype:
                raise TinymodError(f"{where}: {key} has dtype {arrays[key].dtype}, expected {dtype}")
    return state


def resolve_model_path(run_or_checkpoint):
    """A checkpoint path from a run folder (its model.npz) or a checkpoint file."""
    path = Path(run_or_checkpoint)
    if path.is_dir():
        model = path / "model.npz"
        if not model.is_file():
            raise TinymodError(f"{path} holds no model.npz (is it a finished tinymod run?)")
        return model
    return path
