"""`make bench`'s tables, rendered from what tinymod.scale.bench measured."""


PEERS = {"torch": "PyTorch eager", "torch_compile": "torch.compile", "jax_jit": "JAX jit"}


def _peer_step(row, key):
    entry = row.get(key)
    return entry["step"] if entry and "step" in entry else None


def _peers(row, ours):
    """A row's peer cells (ms, or "not installed") and the fastest peer's time over `ours`."""
    peers = {key: _peer_step(row, key) for key in PEERS}
    measured = {PEERS[k]: v for k, v in peers.items() if v}
    ratio = "-"
    if measured:
        name, fastest = min(measured.items(), key=lambda kv: kv[1])
        ratio = f"{fastest / ours:.1f}x ({name})"
    return " | ".join(f"{v:.2f}" if v else "not installed" for v in peers.values()), ratio


def render(results, start, waits=None):
    """The benchmark as one markdown table plus the notes that go with it; `waits` adds the
    bytes a warm step allocates by T and the wait for grokking."""
    best = min(results, key=lambda r: r["rows"]["float32"]["ours"]["step"])
    lines = ["| threads | dtype | ours, plain call: step (ms) | ours by parts, timed again: forward / backward / "
             "AdamW / step (ms) | PyTorch eager | torch.compile | JAX jit | ours (plain call) vs the "
             "fastest peer | fraction of the matmul limit | bytes allocated per step |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for dtype, row in r["rows"].items():
            o = row["ours"]
            ours = f"{o['forward']:.2f} / {o['backward']:.2f} / {o['optimizer']:.2f} / **{o['step']:.2f}**"
            cells, ratio = _peers(row, o["plain_step"])
            lines.append(f"| {r['threads']} | {dtype} | **{o['plain_step']:.2f}** | {ours} | {cells} | "
                         f"{ratio} | {100 * row['fraction_of_limit']:.0f}% | {o['allocated_bytes'] / 2**20:.1f} MiB |")
    torch_version = next((row["torch"]["version"] for r in results for row in r["rows"].values()
                          if row["torch"]), None)
    jax_version = next((row["jax_jit"]["version"] for r in results for row in r["rows"].values()
                        if row.get("jax_jit")), None)
    errors = sorted({row["torch_compile"]["error"] for r in results for row in r["rows"].values()
                     if row.get("torch_compile") and "error" in row["torch_compile"]})
    lines += ["", f"PyTorch {torch_version or 'not installed'}, JAX {jax_version or 'not installed'} "
                  f"(both optional: pip install '.[bench]'). Compile times are excluded."
                  + (f" torch.compile failed: {'; '.join(errors)}" if errors else ""),
              f"Matmul rate: {best['rows']['float32']['matmul_gflops']:.0f} GFLOP/s float32, "
              f"{best['rows']['float64']['matmul_gflops']:.0f} float64 ({best['threads']} thread(s)); "
              f"step: {best['rows']['float32']['step_gflop']:.3f} GFLOP of matmuls."]
    lines += ["", f"Fastest for ours: {best['threads']} thread(s). Batch: "
                  f"{best['rows']['float32']['ours']['batch']} pairs (full batch).",
              "", f"Where our step's time goes ({best['threads']} thread(s), median ms):", "",
              "| part | float32 | float64 |", "|---|---|---|"]
    p32, p64 = (best["rows"][d]["profile"]["parts"] for d in ("float32", "float64"))
    lines += [f"| {name} | {_part(p32[name])} | {_part(p64[name])} |" for name in p32]
    lines += gated_lines(results)
    lines += waits_lines(waits)
    lines += ["", f"Start-up: `tinymod --help` {start['help_s']:.2f} s (imports neither numba nor "
                  f"matplotlib); numba compile on first use {start['numba_compile_s']:.2f} s with an "
                  f"empty cache, {start['numba_cached_s']:.2f} s from the cache. First step of the "
                  f"float32 benchmark (compiled kernels loaded): "
                  f"{best['rows']['float32']['ours']['first_call_s']:.2f} s."]
    return "\n".join(lines)


def _part(ms):
    """A part's median ms; the remainder ("everything else" = the step's median minus the
    parts' medians, each timed alone) can come out below zero when the parts, alone, ran
    slower than inside the step: that says it is too small to resolve, not negative."""
    return f"{ms:.2f}" if ms >= 0 else "< 0 (not resolved: the parts timed alone took longer)"


def gated_lines(results):
    """Markdown: the gated cells' full-batch step (ours, plain call) beside the same cell in
    PyTorch (nn.GRU, nn.LSTM), torch.compile and JAX jit."""
    rows = [(r, cell, dtype, row) for r in results for cell, by_dtype in r.get("gated", {}).items()
            for dtype, row in by_dtype.items()]
    if not rows:
        return []
    lines = ["", "Gated cells, the same step (median ms; vs vanilla: over the vanilla step in the same row "
                 "of the first table):", "",
             "| threads | cell | dtype | ours | vs vanilla | PyTorch eager | torch.compile | JAX jit | fastest peer vs ours |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r, cell, dtype, row in rows:
        cells, ratio = _peers(row, row["ours"])
        vanilla = r["rows"][dtype]["ours"]["plain_step"]          # plain calls both
        lines.append(f"| {r['threads']} | {cell} | {dtype} | **{row['ours']:.2f}** | {row['ours'] / vanilla:.1f}x | "
                     f"{cells} | {ratio} |")
    parity = results[0].get("torch_parity") or {}
    if any(v is not None for v in parity.values()):
        lines += ["", "Ours against PyTorch's own cells with our parameters copied in (float64, T = 1 to 3; "
                      "largest relative difference over the loss and every gradient): "
                      + ", ".join(f"{cell} {v:.1e}" for cell, v in parity.items() if v is not None) + "."]
    return lines


def waits_lines(waits):
    """Markdown: bytes per warm step for each T, and seconds to grok (ours measured; a peer's
    projected as the same number of steps at its median step time)."""
    if not waits:
        return []
    lines = ["", "Bytes a warm float32 step allocates (tracemalloc's peak, median of 3 steps):", "",
             "| T | examples | allocated |", "|---|---|---|"]
    lines += [f"| {T} | {n:,} | {b / 2**20:.2f} MiB |" for T, (n, b) in waits["allocation"].items()]
    grok, best = waits["grok"], waits["best_row"]
    if "error" in grok:
        return lines + ["", f"Time to grok, `default` seed 0: not measured ({grok['error']})."]
    steps = grok["grok_step"]
    lines += ["", f"Time to grok, `default` seed 0 (test accuracy first at 99%, step {steps:,}): "
                  f"**{grok['wall_s']:.1f} s** from the start of the `tinymod train` process to that evaluation "
                  f"(every evaluation, snapshot and checkpoint on their defaults), against the steps' own "
                  f"{grok['steps_s']:.1f} s in the same run ({steps:,} x {grok['median_step_ms']:.2f} ms, the median "
                  f"of its rows' median step): **{grok['ratio']:.2f}x**."]
    ours = best["ours"]["plain_step"] if best else None          # the plain call, as the first table
    for key, name in PEERS.items():
        step = _peer_step(best, key) if best else None
        lines.append(f"{name}: " + ("not installed." if not step else
                                    f"{steps * step / 1e3:.1f} s projected ({steps:,} steps at its median {step:.2f} ms "
                                    f"on the paper's batch, where ours takes {ours:.2f} ms: steps against steps, "
                                    f"ours {step / ours:.1f}x ahead)."))
    return lines
