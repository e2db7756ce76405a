"""make gpu-check: the GPU proof, in one run of a few minutes on a machine with an NVIDIA
GPU and CuPy. (1) the backend tests with CuPy in place of array_api_strict; (2) agreement
of forward and BPTT with NumPy on random inputs at the paper's shapes, every cell; (3) the warm time of
one full-batch training step on CPU (NumPy + numba) and GPU (CuPy), on the paper's setting
and on a larger one, as one table. Run from the repository root."""
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.getcwd())
from tinymod.model import rnn  # noqa: E402
from tinymod.model import backend, data, kernels, optim

# Agreement tolerances: the largest |gpu - cpu| over a gradient, relative to its largest |cpu|.
TOL = {"float64": 1e-10, "float32": 1e-3}
SETTINGS = [("paper: p=113, 30%, D=H=128", 113, 0.3, 128), ("large: p=1009, 30%, D=H=512", 1009, 0.3, 512)]


def backend_tests():
    env = {**os.environ, "TINYMOD_TEST_BACKEND": "cupy", "PYTHONPATH": os.getcwd()}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/test_backend.py"], env=env, capture_output=True, text=True)
    print(result.stdout.strip().splitlines()[-1])
    return result.returncode == 0


def agreement(cp):
    ok = True
    x = np.random.default_rng(1).integers(0, 113, (4000, 2))
    y = x.sum(axis=1) % 113
    for cell, dtype in [(cell, dtype) for cell in rnn.CELLS for dtype in ("float64", "float32")]:
        params = rnn.init_params(113, 128, 128, seed=3, dtype=dtype, cell=cell)
        loss, grads = rnn.loss_and_grads(params, x, y, cell=cell)
        gpu = {k: cp.asarray(v) for k, v in params.items()}
        loss_g, grads_g = rnn.loss_and_grads(gpu, cp.asarray(x), cp.asarray(y), cell=cell)
        worst = max(float(np.abs(backend.to_numpy(grads_g[k]) - grads[k]).max() / np.abs(grads[k]).max())
                    for k in grads)
        passed = worst < TOL[dtype] and abs(loss_g - loss) < TOL[dtype] * max(1.0, abs(loss))
        ok &= passed
        print(f"agreement {cell} {dtype}: loss cpu {loss:.6f} gpu {loss_g:.6f}; worst relative gradient "
              f"difference {worst:.1e} (tolerance {TOL[dtype]:g}) {'ok' if passed else 'FAIL'}")
    return ok


def step_time(xp, p, frac, width, dtype, repeats, sync):
    ds = data.make_dataset(p, 2, frac, 0)
    x, y = xp.asarray(ds.x_train), xp.asarray(ds.y_train)
    params = rnn.init_params(p, width, width, seed=0, dtype=dtype, xp=xp)
    opt = optim.AdamW(params)

    def step():
        loss, grads = rnn.loss_and_grads(params, x, y)
        opt.step(params, grads)
        sync()

    step()                                   # compile / warm up (not timed)
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times)), len(ds.x_train)


def main():
    cp = backend.get("cupy")
    name = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    print(f"GPU: {name}; CuPy {cp.__version__}; NumPy {np.__version__}; CPU threads {os.cpu_count()}; "
          f"numba kernels on the CPU: {kernels.numba_enabled()}")
    ok = backend_tests()
    ok &= agreement(cp)
    sync = cp.cuda.Stream.null.synchronize
    print("\n| setting | B | dtype | CPU ms/step | GPU ms/step | GPU speed-up |\n|---|---|---|---|---|---|")
    for label, p, frac, width in SETTINGS:
        for dtype in ("float32", "float64"):
            large = p > 500
            cpu, B = step_time(np, p, frac, width, dtype, 3 if large else 20, lambda: None)
            gpu, _ = step_time(cp, p, frac, width, dtype, 10 if large else 50, sync)
            print(f"| {label} | {B} | {dtype} | {cpu:.1f} | {gpu:.2f} | {cpu / gpu:.1f}x |", flush=True)
    print("\nmedians of warm steps (forward, BPTT, AdamW); CPU: NumPy + numba on this machine's CPU")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
