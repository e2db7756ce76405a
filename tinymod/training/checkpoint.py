"""Checkpoints (contract 4, docs/contracts.md): atomic .npz files, loaded with allow_pickle=False
and validated, with a precise message for each fault.

Layout of one file: the cell's parameter arrays under their names (six for the vanilla
cell, seven for a GRU or an LSTM); `config`, a 0-d string array of JSON (at least p,
d_embed, d_hidden, activation, seq_len, frac, seed, step, format_version; `cell`, absent in
a vanilla model's older files, says which); and the optimiser state under `opt_` keys
(`opt_t`, `opt_m_<name>`, `opt_v_<name>`).
"""
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from tinymod.training import runs
from tinymod.model.backend import to_numpy
from tinymod.errors import TinymodError
from tinymod.model.rnn import (ACTIVATIONS, CELLS, DTYPES, GATED_NAMES, PARAM_NAMES, cell_of, param_names,
                               param_shapes)

FORMAT_VERSION = 1
REQUIRED_CONFIG = ("p", "d_embed", "d_hidden", "activation", "seq_len", "frac", "seed",
                   "step", "format_version")


def metadata(settings, step, **extra):
    """A checkpoint's config: the run's settings (a dict), the step, anything else to record
    (seconds, how a model was built) and tinymod's version. Built here, once."""
    from tinymod import __version__
    return {**settings, "step": step, **extra, "version": __version__}


def save(path, params, config, opt_state=None):
    """Write params (+ optimiser state) and `config` (a dict) to `path`, through the one
    atomic writer (runs.atomic_write)."""
    path = Path(path)
    arrays = {name: to_numpy(params[name]) for name in param_names(cell_of(params))}
    arrays["config"] = np.array(json.dumps({**config, "format_version": FORMAT_VERSION}))
    for key, value in (opt_state or {}).items():
        arrays[f"opt_{key}"] = to_numpy(value)
    return runs.atomic_write(path, lambda f: np.savez(f, **arrays))


EVERY_NAME = tuple(dict.fromkeys(PARAM_NAMES + GATED_NAMES))    # every cell's parameters
OPT_KEYS = ("opt_t", *(f"opt_{moment}_{name}" for name in EVERY_NAME for moment in ("m", "v", "gf")))
ALLOWED = (*EVERY_NAME, "config", *OPT_KEYS)
MAX_CONFIG_CHARS = 1 << 16          # the config's JSON
MAX_MODEL_BYTES = 4 << 30           # parameters a checkpoint may declare (4 GiB)


# every setting that shapes a model or its training: what makes a checkpoint part of a run
IDENTITY = ("p", "seq_len", "d_embed", "d_hidden", "cell", "activation", "dtype", "frac", "seed",
            "lr", "weight_decay", "beta1", "beta2", "eps", "grokfast_lambda", "grokfast_alpha",
            "batch_size")       # the batch size decides the minibatches (default_rng([seed, step]))


def identity(config):
    """The IDENTITY settings of a config (a dict), those it has."""
    return {name: config[name] for name in IDENTITY if name in config}


def saved_run_config(*folders):
    """The settings in the first of `folders` that holds a config.json (the run a model file
    or an analysis folder belongs to), or None when none holds one. One that is there but
    unreadable (not a regular file, not a JSON object, refused by the system) is a
    TinymodError: a model beside it cannot be checked against its run."""
    found = next((Path(f) / runs.CONFIG for f in folders if os.path.lexists(Path(f) / runs.CONFIG)), None)
    if found is None:
        return None
    try:
        saved = json.loads(runs.read_regular(found, "run config"))
    except TinymodError:                 # already one line: not a regular file, or refused
        raise
    except (ValueError, RecursionError, FileNotFoundError) as e:
        saved = e
    if not isinstance(saved, dict):
        raise TinymodError(f"{found} is unreadable ({str(saved)[:120] or 'not a JSON object'}), so the model "
                           f"beside it cannot be checked against its run: mend it")
    return saved


def run_identity(model_path):
    """The identity of the run a model file lives in (its config.json, beside model.npz or
    two folders up from checkpoints/step_N.npz), so that a foreign file is refused before any
    analysis of it is written; {} for a file in no run (a constructed model)."""
    path = Path(model_path)
    saved = saved_run_config(path.parent, path.parent.parent)
    return identity(saved) if saved else {}


def load(path, expect=None, check=None):
    """(params, config, opt_state) from a checkpoint, after validating everything.

    `expect`, settings of the run the file must belong to (`identity(run_config)`), is
    compared with the file's small config member before any array is decompressed: a file of
    another run is refused at the cost of reading its config. `check(config)`, the caller's
    own refusal (an analysis too big for this machine), runs at the same point.

    Hostile files are refused before they cost anything: the member names are checked
    against the contract and every .npy header (shape and dtype) against the config
    before any array is decompressed, so a header that declares 320 GB is refused in
    milliseconds. Raises TinymodError saying exactly what is wrong: missing file, not an
    npz (truncated, corrupt, or some other file), missing or unexpected arrays, bad config,
    wrong shapes or dtypes, non-finite values, an unknown format version.
    """
    path = Path(path)
    if not path.is_file():
        raise TinymodError(f"no checkpoint at {path}")
    where = f"checkpoint {path}"
    try:
        with zipfile.ZipFile(path) as zf:
            headers = _headers(zf, where)
            if "config" not in headers:
                raise TinymodError(f"{where} lacks arrays: config")
            shape, dtype = headers["config"]
            if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * MAX_CONFIG_CHARS:
                raise TinymodError(f"{where}: 'config' must be a 0-d string array of JSON "
                                   f"(at most {MAX_CONFIG_CHARS} characters)")
            config = _read_config(_member(zf, "config"), where)
            _check_belongs(config, expect or {}, path)
            _check_headers(headers, config, where)
            if check is not None:
                check(config)
            arrays = {key: _member(zf, key) for key in headers}
    except TinymodError:                    # already precise (it is a ValueError too)
        raise
    except (NotImplementedError, RuntimeError) as e:     # zipfile: another compression, or encrypted
        raise TinymodError(f"{path} has a member stored in a way tinymod does not read (a compression "
                           f"other than deflate, or encryption): {_plain(e)}") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise TinymodError(f"{path} is not a readable checkpoint (truncated or corrupt, or not "
                           f"an .npz file): {_plain(e)}") from None
    shapes = _shapes(config)
    params = {name: _checked(arrays[name], name, shapes[name], where) for name in shapes}
    dtypes = {value.dtype for value in params.values()}
    if len(dtypes) != 1:
        raise TinymodError(f"{where} mixes dtypes: {', '.join(sorted(map(str, dtypes)))}")
    opt_state = _read_opt_state(arrays, params, where)
    return params, config, opt_state


def _shapes(config):
    return param_shapes(config["p"], config["d_embed"], config["d_hidden"], config.get("cell", "rnn"))


def _check_belongs(config, expect, path):
    for name, value in expect.items():
        if name in config and config[name] != value:
            raise TinymodError(f"{path} was made with {name} = {config[name]!r}, but the run has "
                               f"{name} = {value!r}")


def _plain(error):
    """An error's text without numpy's advice to load with allow_pickle=True."""
    return str(error).split(" allow_pickle")[0].split("Use allow_pickle")[0].strip() or type(error).__name__


def _headers(zf, where):
    """{key: (shape, dtype)} from each member's .npy header, decompressing only the header."""
    headers = {}
    for info in zf.infolist():
        key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        if key not in ALLOWED:
            raise TinymodError(f"{where} has unexpected arrays: {info.filename}")
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read is None:
                raise TinymodError(f"{where}: {key} has .npy format version {version}")
            shape, _, dtype = read(f)
        if dtype.hasobject:
            raise TinymodError(f"{where}: {key} holds Python objects; checkpoints hold numbers only")
        headers[key] = (tuple(shape), dtype)
    return headers


def _member(zf, key):
    """One array, in native byte order and C order whatever valid .npy layout it was saved in
    (big-endian, Fortran order): the same numbers, in the layout the kernels expect."""
    with zf.open(f"{key}.npy") as f:
        array = np.lib.format.read_array(f, allow_pickle=False)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array if array.flags.c_contiguous else np.ascontiguousarray(array)


def _check_headers(headers, config, where):
    """Every array the config implies is there, with its shape and a float dtype (the
    optimiser's step a 0-d integer), before anything is decompressed."""
    shapes = _shapes(config)
    param_of = lambda key: key.split("_", 2)[-1] if key.startswith("opt_") else key   # opt_m_W_ih: W_ih
    foreign = [key for key in headers if key not in ("config", "opt_t") and param_of(key) not in shapes]
    if foreign:
        raise TinymodError(f"{where} has arrays of another cell than its config's "
                           f"{config.get('cell', 'rnn')}: {', '.join(foreign)}")
    missing = [key for key in shapes if key not in headers]
    if missing:
        raise TinymodError(f"{where} lacks arrays: {', '.join(missing)}")
    size = 8 * sum(int(np.prod(s)) for s in shapes.values())
    if size > MAX_MODEL_BYTES:
        raise TinymodError(f"{where}: its config declares a model of {size / 2**30:.1f} GiB, "
                           f"more than the {MAX_MODEL_BYTES >> 30} GiB a checkpoint may hold")
    for key, (shape, dtype) in headers.items():
        if key == "config":
            continue
        if key == "opt_t":
            if shape != () or dtype.kind not in "iu":
                raise TinymodError(f"{where}: optimiser state lacks a scalar integer opt_t")
            continue
        expected = shapes[param_of(key)]
        if shape != tuple(expected):
            raise TinymodError(f"{where}: {key} has shape {shape}, expected {tuple(expected)}")
        if dtype.name not in DTYPES:
            raise TinymodError(f"{where}: {key} has dtype {dtype}, expected float32 or float64")


def _read_config(array, where):
    try:
        config = json.loads(str(array))
    except ValueError as e:
        raise TinymodError(f"{where}: 'config' is not valid JSON: {e}") from None
    except RecursionError:
        raise TinymodError(f"{where}: 'config' nests too deeply to be a config") from None
    if not isinstance(config, dict):
        raise TinymodError(f"{where}: 'config' must be a JSON object")
    missing = [k for k in REQUIRED_CONFIG if k not in config]
    if missing:
        raise TinymodError(f"{where}: config lacks {', '.join(missing)}")
    if config["format_version"] != FORMAT_VERSION:
        raise TinymodError(f"{where} has format_version {config['format_version']!r}; "
                           f"this tinymod reads version {FORMAT_VERSION}")
    for key in ("p", "d_embed", "d_hidden", "seq_len", "step", "seed"):
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if key in ("p", "d_embed", "d_hidden", "seq_len") else 0):
            kind = "a non-negative" if key in ("step", "seed") else "a positive"
            raise TinymodError(f"{where}: config {key} must be {kind} integer, got {value!r}")
    frac = config["frac"]
    if not isinstance(frac, (int, float)) or isinstance(frac, bool) or not 0 < frac < 1:
        raise TinymodError(f"{where}: config frac must be a number in (0, 1), got {frac!r}")
    cell = config.get("cell", "rnn")
    if cell not in CELLS:
        raise TinymodError(f"{where}: unknown cell {cell!r}")
    if cell == "rnn" and config["activation"] not in ACTIVATIONS:
        raise TinymodError(f"{where}: unknown activation {config['activation']!r}")
    if cell != "rnn" and config["activation"] is not None:
        raise TinymodError(f"{where}: a {cell} has no activation setting, got {config['activation']!r}")
    if "dtype" in config and config["dtype"] not in DTYPES:
        raise TinymodError(f"{where}: unknown dtype {config['dtype']!r}")
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

    def like_param(key, name):            # a moment: the parameter's shape and dtype
        array = _checked(arrays[key], key, params[name].shape, where)
        if array.dtype != params[name].dtype:
            raise TinymodError(f"{where}: {key} has dtype {array.dtype}, expected {params[name].dtype}")
        return array

    filtered = any(f"opt_gf_{name}" in arrays for name in params)     # the filter's state is all or none
    for name in params:
        for moment in ("m", "v", "gf") if filtered else ("m", "v"):
            key = f"opt_{moment}_{name}"
            if key not in arrays:
                raise TinymodError(f"{where}: optimiser state lacks {key}")
            state[f"{moment}_{name}"] = like_param(key, name)
    return state


def resolve_model_path(run_or_checkpoint):
    """A checkpoint path from a run folder (its model.npz) or a checkpoint file."""
    path = Path(run_or_checkpoint)
    if path.is_dir():
        model = path / runs.MODEL
        if not model.is_file():
            raise TinymodError(f"{path} holds no model.npz (is it a finished tinymod run?)")
        return model
    return path


def read_snapshots(folder, config):
    """The run's parameter snapshots, [(step, params)] in step order, each loaded only when
    reached and checked against the run (`config`) and the step in its name. TinymodError,
    saying how to get them, when the run has none."""
    found = runs.list_snapshots(folder)
    if not found:
        raise TinymodError(f"{folder} has no parameter snapshots ({runs.SNAPSHOTS}/): train it with "
                           f"this tinymod, without --snapshot-every 0, to keep them")

    def loaded():
        for step, path in found:
            params, saved, _ = load(path, expect=identity(config))
            if saved["step"] != step:
                raise TinymodError(f"snapshot {path} holds step {saved['step']}, not the step in its name")
            yield step, params
    return loaded()
