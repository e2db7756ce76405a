"""Checkpoints: exact round trip, atomic writes, and a precise message for each fault."""
import json
import zipfile

import numpy as np
import pytest

from tinymod.model import rnn
from tinymod.training import checkpoint
from tinymod.errors import TinymodError
from tinymod.model.optim import AdamW

CONFIG = {"p": 5, "d_embed": 3, "d_hidden": 4, "activation": "relu", "seq_len": 2,
          "frac": 0.5, "seed": 0, "step": 7}


def saved(tmp_path, dtype="float64", **arrays):
    params = rnn.init_params(5, 3, 4, seed=1, dtype=dtype)
    opt = AdamW(params)
    opt.step(params, {k: np.ones_like(v) for k, v in params.items()})
    path = checkpoint.save(tmp_path / "c.npz", params, CONFIG, opt.state_dict())
    if arrays:   # rewrite with some arrays replaced (None: removed)
        with np.load(path) as npz:
            content = {k: npz[k] for k in npz.files}
        for key, value in arrays.items():
            if value is None:
                del content[key]
            else:
                content[key] = value
        np.savez(path, **content)
    return path, params, opt


@pytest.mark.parametrize("dtype", rnn.DTYPES)
def test_round_trip_is_exact(tmp_path, dtype):
    path, params, opt = saved(tmp_path, dtype)
    loaded, config, state = checkpoint.load(path)
    for name in rnn.PARAM_NAMES:
        assert loaded[name].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(loaded[name], params[name])
    assert config["step"] == 7 and config["format_version"] == checkpoint.FORMAT_VERSION
    assert int(state["t"]) == 1
    np.testing.assert_array_equal(state["v_W_hh"], opt.v["W_hh"])
    with np.load(path, allow_pickle=False) as npz:   # the contract's own reader
        assert set(npz.files) >= {*rnn.PARAM_NAMES, "config", "opt_t"}


@pytest.mark.parametrize("change, message", [
    (dict(W_hh=None), "lacks arrays: W_hh"),
    (dict(extra=np.zeros(2)), "unexpected arrays: extra"),
    (dict(W_hh=np.zeros((4, 5))), "W_hh has shape (4, 5), expected (4, 4)"),
    (dict(b_h=np.zeros(4, dtype=np.int64)), "b_h has dtype int64"),
    (dict(E=np.full((5, 3), np.nan)), "E holds 15 non-finite values"),
    (dict(config=np.array("{not json")), "'config' is not valid JSON"),
    (dict(config=np.array(json.dumps({"p": 5}))), "config lacks d_embed"),
    (dict(config=np.array(json.dumps({**CONFIG, "format_version": 99}))), "format_version 99"),
    (dict(config=np.array(json.dumps({**CONFIG, "format_version": 1, "p": 0}))),
     "config p must be a positive integer"),
    (dict(opt_t=None), "lacks a scalar integer opt_t"),
    (dict(opt_m_E=None), "optimiser state lacks opt_m_E"),
    (dict(b_out=np.zeros(5, dtype=np.float32)), "mixes dtypes"),
])
def test_each_fault_has_its_message(tmp_path, change, message):
    path, _, _ = saved(tmp_path, **change)
    with pytest.raises(TinymodError, match=message.replace("(", r"\(").replace(")", r"\)")):
        checkpoint.load(path)


def test_missing_truncated_garbage_and_pickled_files(tmp_path):
    with pytest.raises(TinymodError, match="no checkpoint at"):
        checkpoint.load(tmp_path / "absent.npz")
    path, _, _ = saved(tmp_path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(TinymodError, match="truncated or corrupt"):
        checkpoint.load(truncated)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(TinymodError, match="truncated or corrupt"):
        checkpoint.load(garbage)
    pickled = tmp_path / "pickled.npz"
    with np.load(path) as npz:
        content = {k: npz[k] for k in npz.files}
    content["E"] = np.array([object()], dtype=object)
    np.savez(pickled, **content)
    with pytest.raises(TinymodError, match="E holds Python objects; checkpoints hold numbers only"):
        checkpoint.load(pickled)


def test_a_crash_mid_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path, params, _ = saved(tmp_path)
    before = path.read_bytes()

    def crash(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt   # the process dies mid-write

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, params, CONFIG)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]     # no temporary left behind
    assert zipfile.is_zipfile(path)
