"""Speed you can measure: one full-batch training step of ours against a plain PyTorch RNN
of the same shape, and against the machine's own matrix-multiply rate.

Every timing is the median of many warm repetitions: JIT compilation and the first calls
are excluded and reported separately. Each thread count runs in a fresh worker process
(BLAS reads its thread count at start-up), and ours and PyTorch's are timed in the same
worker, alternating, so they see the same machine state.
"""
import json
import os
import statistics
import subprocess
import sys
import time
import timeit

import numpy as np

from tinymod.model import blocks, data, kernels, optim, rnn
from tinymod.scale.bench_table import render


def _median_ms(fn, repeats):
    return 1e3 * statistics.median(timeit.repeat(fn, number=1, repeat=repeats))


def step_flops(p, d_embed, d_hidden, batch):
    """Multiply-add FLOPs (2 per MAC) of our step's matmuls (elementwise work not counted):
    forward U, A and the readout; backward dW_out, dh, dW_hh, dH1, dE, dW_ih."""
    P, D, H, B = p, d_embed, d_hidden, batch
    forward = 2 * (P * D * H + P * H * H + B * H * P)
    backward = 2 * (2 * B * P * H + 2 * P * H * H + 2 * P * H * D)
    return forward + backward


def time_ours(p, frac, width, dtype, repeats, cell="rnn"):
    ds = data.make_dataset(p, 2, frac, 0)
    x, y = ds.x_train, ds.y_train
    params = rnn.init_params(p, width, width, seed=0, dtype=dtype, cell=cell)
    opt = optim.AdamW(params)
    start = time.perf_counter()
    loss, grads = rnn.loss_and_grads(params, x, y)       # first call: compiles or loads kernels
    first_call = time.perf_counter() - start
    for _ in range(3):
        opt.step(params, rnn.loss_and_grads(params, x, y)[1])
    logits, cache = rnn.forward(params, x)
    _, dlogits = kernels.softmax_xent(logits, y)

    def step():
        opt.step(params, rnn.loss_and_grads(params, x, y)[1])

    return {
        "forward": _median_ms(lambda: kernels.softmax_xent(rnn.forward(params, x)[0], y), repeats),
        "backward": _median_ms(lambda: rnn.backward(params, cache, dlogits), repeats),
        "optimizer": _median_ms(lambda: opt.step(params, grads), repeats),
        "step": _median_ms(step, repeats),
        "first_call_s": first_call, "batch": len(x),
    }


def _torch_recurrent(torch, cell, width):
    """Our cell as PyTorch's one-layer, batch-first module: nn.RNN (relu), nn.GRU or nn.LSTM."""
    if cell == "rnn":
        return torch.nn.RNN(width, width, nonlinearity="relu", batch_first=True)
    return {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell](width, width, batch_first=True)


def _torch_model(torch, p, frac, width, dtype, cell="rnn"):
    """(loss function, optimiser) of the PyTorch model: nn.Embedding, nn.RNN (relu), nn.GRU
    or nn.LSTM, nn.Linear, cross-entropy and torch.optim.AdamW with our hyper-parameters."""
    torch.manual_seed(0)
    ds = data.make_dataset(p, 2, frac, 0)
    kind = {"float32": torch.float32, "float64": torch.float64}[dtype]
    embed = torch.nn.Embedding(p, width).to(kind)
    recurrent = _torch_recurrent(torch, cell, width).to(kind)
    readout = torch.nn.Linear(width, p).to(kind)
    modules = torch.nn.ModuleList([embed, recurrent, readout])
    opt = torch.optim.AdamW(modules.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-8,
                            weight_decay=1.0)
    x, y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)

    def loss_fn():
        out, _ = recurrent(embed(x))
        return torch.nn.functional.cross_entropy(readout(out[:, -1]), y)
    return loss_fn, opt


def torch_parity(cell, p=11, width=5, batch=40):
    """Largest relative difference, over the loss and every gradient, between ours and
    PyTorch's nn.RNN (relu) / nn.GRU / nn.LSTM with our parameters copied in, float64, T = 1..3.
    None if PyTorch is not importable."""
    try:
        import torch
    except ImportError:
        return None
    worst = 0.0
    for T in (1, 2, 3):
        params = rnn.init_params(p, width, width, seed=2, dtype="float64", cell=cell)
        x = np.random.default_rng(T).integers(0, p, (batch, T))
        loss, grads = rnn.loss_and_grads(params, x, x.sum(axis=1) % p)
        module = _torch_recurrent(torch, cell, width).double()
        P = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        with torch.no_grad():
            for ours, theirs in (("W_ih", "weight_ih_l0"), ("W_hh", "weight_hh_l0"),
                                 ("b_h" if cell == "rnn" else "b_ih", "bias_ih_l0")):
                getattr(module, theirs).copy_(P[ours])
            module.bias_hh_l0.copy_(torch.zeros(width) if cell == "rnn" else P["b_hh"])
        out, _ = module(P["E"][torch.from_numpy(x)])
        theirs = torch.nn.functional.cross_entropy(out[:, -1] @ P["W_out"].T + P["b_out"], torch.from_numpy(x.sum(axis=1) % p))
        theirs.backward()
        found = {"E": P["E"].grad, "W_out": P["W_out"].grad, "b_out": P["b_out"].grad,
                 "W_ih": module.weight_ih_l0.grad, "W_hh": module.weight_hh_l0.grad,
                 **({"b_h": module.bias_ih_l0.grad} if cell == "rnn" else
                    {"b_ih": module.bias_ih_l0.grad, "b_hh": module.bias_hh_l0.grad})}
        worst = max(worst, abs(theirs.item() - loss) / abs(loss),
                    *(float(np.abs(g.numpy() - grads[k]).max() / max(np.abs(grads[k]).max(), 1e-300))
                      for k, g in found.items()))                  # W_hh's gradient is 0 at T = 1
    return worst


def time_torch(p, frac, width, dtype, repeats, cell="rnn"):
    """The same model as PyTorch users write it: nn.Embedding, nn.RNN (relu), nn.Linear,
    cross-entropy and torch.optim.AdamW with the same hyper-parameters. None if PyTorch
    is not importable."""
    try:
        import torch
    except ImportError:
        return None
    loss_fn, opt = _torch_model(torch, p, frac, width, dtype, cell)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()

    for _ in range(3):
        step()
    holder = {}

    def backward():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        start = time.perf_counter()
        loss.backward()
        holder.setdefault("t", []).append(time.perf_counter() - start)

    with torch.no_grad():
        forward = _median_ms(loss_fn, repeats)
    for _ in range(repeats):
        backward()
    return {"forward": forward, "backward": 1e3 * statistics.median(holder["t"]),
            "optimizer": _median_ms(opt.step, repeats), "step": _median_ms(step, repeats),
            "version": torch.__version__}


def time_torch_compiled(p, frac, width, dtype, repeats, cell="rnn"):
    """The PyTorch model above with its loss compiled by torch.compile (inductor, C++ on
    the CPU): compile time excluded. None if PyTorch is not importable or cannot compile."""
    try:
        import torch
    except ImportError:
        return None
    eager, opt = _torch_model(torch, p, frac, width, dtype, cell)
    loss_fn = torch.compile(eager)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()

    try:
        start = time.perf_counter()
        step()
        compile_s = time.perf_counter() - start
    except Exception as e:                       # no C++ compiler, an unsupported op...
        return {"error": f"{type(e).__name__}: {e}".splitlines()[0][:200]}
    for _ in range(3):
        step()
    return {"step": _median_ms(step, repeats), "compile_s": compile_s}


def _jax_step(jax, jnp, cell, P, x_t, h, c):
    """One recurrent step in JAX, the equations of tinymod.model.rnn and tinymod.model.gated."""
    if cell == "rnn":
        return jax.nn.relu(P["E"][x_t] @ P["W_ih"].T + h @ P["W_hh"].T + P["b_h"]), c
    gi, gh = P["E"][x_t] @ P["W_ih"].T + P["b_ih"], h @ P["W_hh"].T + P["b_hh"]
    if cell == "gru":
        H = h.shape[1]
        r, z = jnp.split(jax.nn.sigmoid(gi[:, :2 * H] + gh[:, :2 * H]), 2, axis=1)
        n = jnp.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
        return (1 - z) * n + z * h, c
    i, f, g, o = jnp.split(gi + gh, 4, axis=1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def time_jax(p, frac, width, dtype, repeats, cell="rnn"):
    """The same model and AdamW in JAX, the whole step under one jax.jit: compile time
    excluded. None if JAX is not importable."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    ds = data.make_dataset(p, 2, frac, 0)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    params = {k: jnp.asarray(v) for k, v in rnn.init_params(p, width, width, 0, dtype, cell=cell).items()}
    lr, b1, b2, eps, wd = 1e-3, 0.9, 0.98, 1e-8, 1.0

    def loss_fn(P):
        h = c = jnp.zeros((x.shape[0], width), P["E"].dtype)
        for t in range(x.shape[1]):
            h, c = _jax_step(jax, jnp, cell, P, x[:, t], h, c)
        logits = h @ P["W_out"].T + P["b_out"]
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - jnp.take_along_axis(logits, y[:, None], 1)[:, 0])

    @jax.jit
    def step(P, m, v, t):
        loss, g = jax.value_and_grad(loss_fn)(P)
        t = t + 1
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        size, bc2 = lr / (1 - b1 ** t), jnp.sqrt(1 - b2 ** t)
        P = jax.tree_util.tree_map(lambda p, m, v: p * (1 - lr * wd) - size * m / (jnp.sqrt(v) / bc2 + eps),
                                   P, m, v)
        return P, m, v, t, loss

    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    state = [params, zeros, zeros, jnp.asarray(0.0, params["E"].dtype)]
    start = time.perf_counter()
    state = list(step(*state))
    jax.block_until_ready(state[0])
    compile_s = time.perf_counter() - start

    def run():
        state[:4] = step(*state[:4])[:4]
        jax.block_until_ready(state[0])

    for _ in range(3):
        run()
    return {"step": _median_ms(run, repeats), "compile_s": compile_s, "version": jax.__version__}


def step_allocation_bytes(p, frac, width, dtype, steps=5, seq_len=2):
    """The largest amount of memory a warm training step allocates beyond what it started
    with (tracemalloc's peak, which NumPy reports its buffers to), median over steps."""
    import tracemalloc
    ds = data.make_dataset(p, seq_len, frac, 0)
    x, y = ds.x_train, ds.y_train
    params = rnn.init_params(p, width, width, seed=0, dtype=dtype)
    opt = optim.AdamW(params)
    for _ in range(3):
        opt.step(params, rnn.loss_and_grads(params, x, y)[1])
    peaks = []
    tracemalloc.start()
    for _ in range(steps):
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        opt.step(params, rnn.loss_and_grads(params, x, y)[1])
        peaks.append(tracemalloc.get_traced_memory()[1] - base)
    tracemalloc.stop()
    return int(statistics.median(peaks))


def matmul_gflops(dtype, n=1024, repeats=20):
    """The machine's measured rate on a large square matmul (GFLOP/s)."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    b = a.T.copy()
    a @ b
    return 2 * n**3 / (_median_ms(lambda: a @ b, repeats) / 1e3) / 1e9


def worker(threads, repeats, p=113, frac=0.3, width=128):
    """Everything measured at one thread count, as a dict (run in a fresh process).

    Ours is timed from a plain library call (`rnn.loss_and_grads` and `AdamW.step`, as a
    user script or a lecture makes them, first in the process), then by parts, with the
    memory a warm step allocates."""
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        pass
    out = {"threads": threads, "rows": {}}
    with blocks.threads_set(threads):                # our example blocks on `threads` threads
        plain = {dtype: time_ours(p, frac, width, dtype, repeats) for dtype in ("float32", "float64")}
        allocated = {dtype: step_allocation_bytes(p, frac, width, dtype) for dtype in ("float32", "float64")}
    for dtype in ("float32", "float64"):
        with blocks.threads_set(threads):
            ours = time_ours(p, frac, width, dtype, repeats)    # again, after the peers' imports
        ours["plain_step"], ours["allocated_bytes"] = plain[dtype]["step"], allocated[dtype]
        ours["first_call_s"] = plain[dtype]["first_call_s"]
        with blocks.threads_set(threads):
            parts = profile(dtype, repeats, p, frac, width)
        rate = matmul_gflops(dtype)
        # the peers last: XLA's threads keep spinning for a while after a JAX call
        peer = time_torch(p, frac, width, dtype, repeats)
        compiled = time_torch_compiled(p, frac, width, dtype, repeats)
        jitted = time_jax(p, frac, width, dtype, repeats)
        flops = step_flops(p, width, width, ours["batch"])
        out["rows"][dtype] = {"ours": ours, "torch": peer, "torch_compile": compiled, "jax_jit": jitted,
                              "matmul_gflops": rate,
                              "step_gflop": flops / 1e9,
                              "fraction_of_limit": flops / (ours["step"] / 1e3) / (rate * 1e9),
                              "profile": parts}
    out["gated"] = {cell: {dtype: {"ours": time_ours(p, frac, width, dtype, repeats, cell)["step"],
                                   "torch": time_torch(p, frac, width, dtype, repeats, cell),
                                   "torch_compile": time_torch_compiled(p, frac, width, dtype, repeats, cell),
                                   "jax_jit": time_jax(p, frac, width, dtype, repeats, cell)}
                           for dtype in ("float32", "float64")}
                    for cell in ("gru", "lstm")}
    out["torch_parity"] = {cell: torch_parity(cell) for cell in ("rnn", "gru", "lstm")}
    return out


def run_worker(threads, repeats):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads),
           "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen={'false' if threads == 1 else 'true'} "
                        f"intra_op_parallelism_threads={threads}"}
    code = f"import json; from tinymod.scale import bench; print(json.dumps(bench.worker({threads}, {repeats})))"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def startup():
    """Seconds for `tinymod --help` (which must not import numba or matplotlib), the numba
    compile of the kernels on first use with an empty cache, and their load from the cache."""
    import tempfile
    help_times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tinymod", "--help"], capture_output=True, check=True)
        help_times.append(time.perf_counter() - start)
    probe = ("import time, numpy as np; from tinymod.model import rnn; "
             "params = rnn.init_params(7, 4, 4); x = np.array([[1, 2]]); t = time.perf_counter(); "
             "rnn.loss_and_grads(params, x, x.sum(1) % 7); print(time.perf_counter() - t)")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        compile_s, cached_s = (float(subprocess.run([sys.executable, "-c", probe], env=env,
                                                    capture_output=True, text=True, check=True).stdout)
                               for _ in range(2))
    return {"help_s": statistics.median(help_times), "numba_compile_s": compile_s,
            "numba_cached_s": cached_s}


def profile(dtype, repeats, p=113, frac=0.3, width=128):
    """Where our step's time goes: its three (B, p, H) matmuls as the step runs them (fixed
    blocks, single-threaded BLAS, tinymod.model.blocks) and the softmax cross-entropy, timed
    alone; the rest (gathers, scatter-adds, activations, small matmuls, AdamW) is the
    remainder."""
    ds = data.make_dataset(p, 2, frac, 0)
    x, y = ds.x_train, ds.y_train
    params = rnn.init_params(p, width, width, seed=0, dtype=dtype)
    opt = optim.AdamW(params)
    logits, cache = rnn.forward(params, x)
    _, dlogits = kernels.softmax_xent(logits, y)
    h, W_out = cache.hs[-1], params["W_out"]
    with blocks.single_threaded_blas():
        parts = {
            "readout h @ W_out.T": _median_ms(lambda: blocks.matmul_rows(h, W_out.T), repeats),
            "dW_out = dlogits.T @ h": _median_ms(lambda: blocks.matmul_sum(dlogits, h), repeats),
            "dh = dlogits @ W_out": _median_ms(lambda: blocks.matmul_rows(dlogits, W_out), repeats),
            "softmax cross-entropy": _median_ms(lambda: kernels.softmax_xent(logits, y), repeats),
        }
    step = _median_ms(lambda: opt.step(params, rnn.loss_and_grads(params, x, y)[1]), repeats)
    parts["everything else"] = step - sum(parts.values())
    return {"step": step, "parts": parts}


__all__ = ["render", "run_worker", "startup", "allocation_by_seq_len", "step_flops", "time_ours"]

# batches like the issue's: T = 3 at p = 31 takes about 27,000 examples, T = 4 about 100,000
ALLOCATION_CASES = {2: (113, 0.3), 3: (31, 0.9), 4: (31, 0.11)}


def allocation_by_seq_len(dtype="float32", width=128):
    """{T: (examples, bytes a warm step allocates)} for T = 2, 3, 4."""
    out = {}
    for T, (p, frac) in ALLOCATION_CASES.items():
        examples = round(frac * p ** T)
        out[T] = (examples, step_allocation_bytes(p, frac, width, dtype, steps=3, seq_len=T))
    return out


