"""One report of the whole story: training, Fourier structure, low rank and ablation,
with our numbers beside the paper's claims (Rangamani, ICASSP 2025)."""
import json
from pathlib import Path

PAPER = {
    "key_frequencies": 6,
    "energy": (0.854, 0.955),
    "fit_error": (1e-3, 1e-2),
}
ROBUST = 0.95     # one key frequency removed: accuracy stays at least this
COLLAPSE = 0.10   # every key frequency removed: accuracy falls below this


def _pct(x):
    return f"{100 * x:.1f}%"


def claims(fourier_report, svd_report, ablation_report):
    """Rows of (claim, paper, ours, verdict), each verdict stating its criterion."""
    rows = []
    key = fourier_report["key_frequencies"]
    n = len(key)
    rows.append(("a few key frequencies carry the computation", f"{PAPER['key_frequencies']}",
                 f"{n}: {' '.join(map(str, key))}",
                 "reproduced" if n == PAPER["key_frequencies"] else
                 f"not exactly: {n} instead of {PAPER['key_frequencies']}"))
    shares = {name: e["energy_share_key_rank"] for name, e in svd_report.items()
              if "energy_share_key_rank" in e}
    lo, hi = min(shares.values()), max(shares.values())
    inside = PAPER["energy"][0] <= lo and hi <= PAPER["energy"][1]
    overlap = lo <= PAPER["energy"][1] and hi >= PAPER["energy"][0]
    rows.append((f"significant singular components (2 per key frequency) hold most energy",
                 f"{_pct(PAPER['energy'][0])} to {_pct(PAPER['energy'][1])}",
                 f"{_pct(lo)} ({min(shares, key=shares.get)}) to {_pct(hi)} ({max(shares, key=shares.get)})",
                 "reproduced" if inside else "partly: the ranges overlap, ours is wider" if overlap
                 else "not: the ranges do not overlap"))
    top = svd_report["E @ W_ih.T"].get("top_vectors", [])[: 2 * n]
    on_key = sum(v["is_key"] for v in top)
    rows.append(("top singular vectors are key Fourier modes", "aligned",
                 f"{on_key} of the top {len(top)} vectors of E @ W_ih.T have a key frequency "
                 f"(mean purity {_pct(sum(v['purity'] for v in top) / max(len(top), 1))})",
                 "reproduced" if len(top) and on_key >= 0.8 * len(top) else
                 f"partly: {on_key} of {len(top)}"))
    err = fourier_report["fit"]["logits_relative_error"]
    rows.append(("logits are Fourier multiplication (relative fit error)",
                 f"{PAPER['fit_error'][0]:g} to {PAPER['fit_error'][1]:g}",
                 f"{err:.3g} (fitted logits {_pct(fourier_report['fit']['logits_fit_accuracy'])} accurate)",
                 "reproduced" if err <= PAPER["fit_error"][1] else
                 f"not: {err / PAPER['fit_error'][1]:.0f}x the paper's upper end"))
    singles = [s["accuracy"] for s in ablation_report["single"] if s["is_key"]]
    worst = min(singles) if singles else float("nan")
    rows.append(("removing one key frequency barely hurts", "barely hurts",
                 f"worst accuracy after one removal {_pct(worst)}",
                 "reproduced" if worst >= ROBUST else f"not: below {_pct(ROBUST)}"))
    last = ablation_report["cumulative"][-1]["accuracy"] if ablation_report["cumulative"] else float("nan")
    half = ablation_report["cumulative"][len(key) // 2]["accuracy"] if len(key) > 1 else float("nan")
    control = ablation_report["control_non_key"][-1]["accuracy"] if ablation_report["control_non_key"] else float("nan")
    rows.append(("removing several destroys accuracy", "collapse",
                 f"{_pct(half)} after {len(key) // 2 + 1} removed, {_pct(last)} after all {n}; "
                 f"control (as many non-key): {_pct(control)}",
                 "reproduced" if last < COLLAPSE and control >= ROBUST else "not"))
    return rows


def markdown(run, summary, fourier_report, svd_report, ablation_report, figures):
    """The text of report.md (figures are linked by file name, beside it)."""
    lines = [f"# tinymod report: {run}", ""]
    if summary:
        grok = (f"test accuracy first reached 99% at step {summary['grok_step']} "
                f"({summary['grok_seconds']:.1f} s)" if summary["grok_step"] is not None
                else "test accuracy never reached 99%")
        lines += ["## Training", "",
                  f"Step {summary['step']}: train accuracy {_pct(summary['train_acc'])}, "
                  f"test accuracy {_pct(summary['test_acc'])}; {grok}.", ""]
    lines += ["## The paper's claims, and ours", "",
              "| claim | paper | ours | verdict |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in
              claims(fourier_report, svd_report, ablation_report)]
    lines += ["", f"Criteria: one removal keeps at least {_pct(ROBUST)} accuracy; removing every key "
                  f"frequency leaves under {_pct(COLLAPSE)} while the control keeps at least "
                  f"{_pct(ROBUST)}. Key rule: {fourier_report['key_rule']}.", ""]
    lines += ["## Low rank", "", "| matrix | shape | rank at 90% | rank at 99% | energy in top 2 × key |",
              "| --- | --- | --- | --- | --- |"]
    for name, e in svd_report.items():
        lines.append(f"| {name} | {e['shape'][0]} × {e['shape'][1]} | {e['rank_90']} | {e['rank_99']} | "
                     f"{_pct(e.get('energy_share_key_rank', float('nan')))} |")
    lines += ["", "## Figures", ""]
    lines += [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


def write(folder, text):
    path = Path(folder) / "report.md"
    path.write_text(text)
    return path


def save_json(path, obj):
    Path(path).write_text(json.dumps(obj, indent=1) + "\n")


# --- each analysis: compute, write its JSON and figures, return the report ---------------

def run_fourier(params, config, folder, threshold=0.25):
    from tinymod import fourier, plots
    report = fourier.analyze(params, config["activation"], threshold)
    save_json(Path(folder) / "fourier.json", report)
    plots.fourier_spectra(report, Path(folder) / "fourier_spectra.png")
    plots.hidden_spectrum_2d(report, Path(folder) / "hidden_spectrum_2d.png")
    plots.neurons_per_frequency(report, Path(folder) / "neurons_per_frequency.png")
    plots.clock(report, Path(folder) / "clock.png")
    return report


def run_svd(params, config, folder, threshold=0.25):
    from tinymod import fourier, plots, rank
    key, _ = fourier.weight_key_frequencies(params, threshold)
    report = rank.analyze(params, config["activation"], key)
    save_json(Path(folder) / "svd.json", {"key_frequencies": key, "matrices": report})
    plots.singular_values(report, Path(folder) / "singular_values.png")
    return report


def run_ablate(params, config, folder, threshold=0.25, site="both", seeds=5):
    from tinymod import ablate, fourier, plots
    key, strength = fourier.weight_key_frequencies(params, threshold)
    report = ablate.analyze(params, config, key, strength, site, seeds)
    save_json(Path(folder) / "ablation.json", report)
    plots.ablation_single(report, Path(folder) / "ablation_single.png")
    plots.ablation_cumulative(report, Path(folder) / "ablation_cumulative.png")
    return report


FIGURES = ("curves.png", "weight_norm.png", "fourier_spectra.png", "hidden_spectrum_2d.png",
           "neurons_per_frequency.png", "clock.png", "singular_values.png",
           "ablation_single.png", "ablation_cumulative.png")
OUTPUTS = ("fourier.json", "svd.json", "ablation.json", "report.md") + FIGURES   # beside a model


def run_report(params, config, folder, summary=None, threshold=0.25):
    fourier_report = run_fourier(params, config, folder, threshold)
    svd_report = run_svd(params, config, folder, threshold)
    ablation_report = run_ablate(params, config, folder, threshold)
    figures = [name for name in FIGURES if (Path(folder) / name).exists()]
    text = markdown(folder, summary, fourier_report, svd_report, ablation_report, figures)
    return write(folder, text), claims(fourier_report, svd_report, ablation_report)
