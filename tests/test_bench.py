"""The benchmark's arithmetic and its table (timings themselves are never asserted)."""
import json

import pytest
from click.testing import CliRunner

from tinymod.scale import bench
from tinymod.cli import main


def test_step_flops_counts_every_matmul():
    p, D, H, B = 113, 128, 128, 3831
    readout = 2 * B * H * p
    assert bench.step_flops(p, D, H, B) == 3 * readout + 2 * (p * D * H + p * H * H) + \
        2 * (2 * p * H * H + 2 * p * H * D)


def fake(threads, ours_step, torch_step, jax_step=None, compile_error=None):
    part = {"forward": 1.0, "backward": 1.0, "optimizer": 0.1}
    row = lambda: {"ours": {**part, "step": ours_step, "plain_step": ours_step * 1.5, "allocated_bytes": 2**21,
                            "first_call_s": 0.5, "batch": 3831},
                   "torch": {**part, "step": torch_step, "version": "x"} if torch_step else None,
                   "torch_compile": {"error": compile_error} if compile_error else None,
                   "jax_jit": {"step": jax_step, "compile_s": 1.0, "version": "0.9"} if jax_step else None,
                   "matmul_gflops": 100.0, "step_gflop": 0.355, "fraction_of_limit": 0.3,
                   "profile": {"step": ours_step, "parts": {"softmax": 1.0, "everything else": 2.0}}}
    return {"threads": threads, "rows": {"float32": row(), "float64": row()}}


def test_render_compares_the_plain_call_with_the_fastest_peer():
    start = {"help_s": 0.2, "numba_compile_s": 2.0, "numba_cached_s": 0.5}
    text = bench.render([fake(1, 8.0, 24.0, jax_step=18.0), fake(2, 6.0, 30.0)], start)
    assert "| 1 | float32 | **12.00** |" in text
    assert "1.5x (JAX jit)" in text and "3.3x (PyTorch eager)" in text     # 18 / 12, 30 / 9
    assert "2.0 MiB" in text and "Fastest for ours: 2 thread(s)" in text
    assert "numba compile on first use 2.00 s" in text
    text = bench.render([fake(1, 8.0, None, compile_error="no compiler")], start)
    assert "not installed" in text and "torch.compile failed: no compiler" in text


def test_a_remainder_below_zero_is_said_to_be_unresolved_not_printed_negative():
    start = {"help_s": 0.2, "numba_compile_s": 2.0, "numba_cached_s": 0.5}
    result = fake(2, 6.0, 30.0)
    result["rows"]["float32"]["profile"]["parts"]["everything else"] = -0.06
    text = bench.render([result], start)
    assert "| everything else | < 0 (not resolved: the parts timed alone took longer) | 2.00 |" in text
    assert "-0.06" not in text


@pytest.mark.parametrize("threads", ["0", "two", "", "1,-2"])
def test_bad_thread_counts(threads):
    result = CliRunner().invoke(main, ["bench", "--threads", threads])
    assert result.exit_code == 2 and "Invalid value for '--threads'" in result.output
    assert result.output.startswith("Usage: ") and "Traceback" not in result.output


def test_the_waits_table_gives_bytes_by_T_and_the_grok_wait():
    start = {"help_s": 0.2, "numba_compile_s": 2.0, "numba_cached_s": 0.5}
    results = [fake(1, 8.0, 24.0, jax_step=18.0)]
    waits = {"allocation": {2: (3831, 2**18), 3: (26812, 2**19), 4: (101683, 2**19)},
             "grok": {"grok_step": 1400, "wall_s": 7.7, "steps_s": 7.0, "median_step_ms": 5.0, "ratio": 1.1},
             "best_row": results[0]["rows"]["float32"]}
    text = bench.render(results, start, waits)
    assert "| 3 | 26,812 | 0.50 MiB |" in text and "| 2 | 3,831 | 0.25 MiB |" in text
    assert "step 1,400): **7.7 s** from the start of the `tinymod train` process" in text
    assert "the steps' own 7.0 s in the same run (1,400 x 5.00 ms" in text and "**1.10x**" in text
    assert "JAX jit: 25.2 s projected (1,400 steps at its median 18.00 ms" in text   # 1400 * 18 ms
    assert "where ours takes 12.00 ms: steps against steps, ours 1.5x ahead" in text   # 18 ms / 12 ms
    assert "torch.compile: not installed." in text
    waits["grok"] = {"error": "Error: no space"}
    assert "Time to grok, `default` seed 0: not measured (Error: no space)." in bench.render(results, start, waits)


def test_the_wait_is_read_from_a_real_run_and_its_first_99_row(tmp_path, monkeypatch):
    """The first row at 99% in metrics.jsonl (a row being appended is skipped), and a failed
    run gives its last error line, not a number."""
    from tinymod.scale import wait
    metrics = tmp_path / "metrics.jsonl"
    row = lambda step, acc, ms: json.dumps({"step": step, "train_loss": 1.0, "train_acc": 1.0, "test_loss": 1.0,
                                            "test_acc": acc, "weight_norm": 1.0, "seconds": 0.1, "step_ms": ms})
    metrics.write_text("\n".join([row(0, 0.1, None), row(100, 0.5, 6.0), row(200, 0.995, 7.0), row(300, 1.0, 7.5),
                                   '{"st']))
    assert wait._first_grok(metrics) == (200, [6.0, 7.0])
    assert wait._first_grok(tmp_path / "none.jsonl") is None
    import subprocess
    import sys
    real = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: real(
        [sys.executable, "-c", "import sys; sys.exit('Error: refused')"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    assert wait.time_to_grok(tmp_path / "run") == {"error": "Error: refused"}


@pytest.mark.parametrize("T", [3, 4])
def test_a_warm_step_allocates_no_example_by_unit_array_for_any_T(T):
    """Every (B, H) state lives in a reused buffer; what a warm step still allocates is
    (B,) index vectors and block-sized temporaries, far below one (B, H) array (before this,
    T = 3 allocated three of them)."""
    p, frac, H = (13, 0.9, 64) if T == 3 else (7, 0.9, 64)
    examples = round(frac * p ** T)
    allocated = bench.step_allocation_bytes(p, frac, H, "float32", steps=3, seq_len=T)
    one_state = examples * H * 4                                   # a (B, H) float32 array
    assert allocated < one_state / 4, (allocated, one_state)


def test_the_gated_table_compares_each_cell_with_its_peers():
    start = {"help_s": 0.2, "numba_compile_s": 2.0, "numba_cached_s": 0.5}
    result = fake(2, 8.0, 24.0)
    result["gated"] = {"gru": {"float32": {"ours": 20.0, "torch": {"step": 30.0}, "torch_compile": None,
                                           "jax_jit": {"step": 10.0}}},
                       "lstm": {"float64": {"ours": 40.0, "torch": None, "torch_compile": None, "jax_jit": None}}}
    result["torch_parity"] = {"rnn": 4e-16, "gru": 9.7e-16, "lstm": None}
    text = bench.render([result], start)
    assert "gradient): rnn 4.0e-16, gru 9.7e-16." in text
    assert "| 2 | gru | float32 | **20.00** | 1.7x | 30.00 | not installed | 10.00 | 0.5x (JAX jit) |" in text   # 20 / 12
    assert "| 2 | lstm | float64 | **40.00** | 3.3x | not installed | not installed | not installed | - |" in text
