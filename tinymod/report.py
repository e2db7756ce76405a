"""One report of the whole story: training, Fourier structure, low rank and ablation,
with our numbers beside the paper's claims (Rangamani, ICASSP 2025)."""
from pathlib import Path
from typing import NamedTuple

from tinymod import runs

PAPER = {
    "key_frequencies": 6,
    "energy": (0.854, 0.955),
    "fit_error": (1e-3, 1e-2),
}
FEW = 10          # "a few": the functional set has at most this many frequencies
ALIGNED = 0.8     # top 2K singular vectors: at least this share on a key frequency
ROBUST = 0.95     # one key frequency removed: accuracy stays at least this
COLLAPSE = 0.10   # every key frequency removed: accuracy falls below this


def _pct(x):
    return f"{100 * x:.1f}%"


def _pct_or_none(x):
    return "none (no key frequency)" if x is None or x != x else _pct(x)


def _freqs(key):
    return " ".join(map(str, key)) or "none"


class Claim(NamedTuple):
    claim: str
    paper: str
    ours: str
    verdict: str
    criterion: str


NO_KEY = ("**No frequency qualifies as key:** no frequency holds any share of the non-constant "
          "energy of E, E @ W_ih.T and W_out (all-zero or constant weights, for example), so the "
          "model carries no Fourier structure and none of the paper's claims can hold for it.")


def claims(fourier_report, svd_report, ablation_report):
    """One Claim per claim of the paper, each verdict with the criterion that decides it.
    The count and the fits use the functional set (what the model needs); low rank and
    ablation use the spectral set (where the energy sits: removing all of it must leave no
    path). One-sided claims are judged one-sided."""
    rows = []
    key = fourier_report["functional_key_frequencies"]
    n = len(key)
    spectral = fourier_report["key_frequencies"]
    rows.append(Claim(
        "a few key frequencies carry the computation", f"{PAPER['key_frequencies']}",
        f"{n} functional: {_freqs(key)} (spectral rule: {len(spectral)} at threshold "
        f"{fourier_report['threshold']:g})",
        "reproduced" if 1 <= n <= FEW else f"not: {n}",
        f"the functional set has 1 to {min(FEW, fourier_report['p'] // 2)} of {fourier_report['p'] // 2} frequencies"))
    shares = {name: e["energy_share_key_rank"] for name, e in svd_report.items()
              if "energy_share_key_rank" in e}
    if shares:
        lo, hi = min(shares, key=shares.get), max(shares, key=shares.get)
        passing = sum(v >= PAPER["energy"][0] for v in shares.values())
        rows.append(Claim(
            "significant singular components (2 per key frequency) hold most energy",
            f"{_pct(PAPER['energy'][0])} to {_pct(PAPER['energy'][1])}",
            f"{_pct(shares[lo])} ({lo}) to {_pct(shares[hi])} ({hi})",
            "reproduced" if passing == len(shares) else
            f"partly: {passing} of {len(shares)} matrices" if passing else "not",
            f"the top {2 * len(spectral)} singular values (2 per spectral key frequency) hold at least "
            f"{_pct(PAPER['energy'][0])} of every matrix's energy"))
    top = svd_report.get("E @ W_ih.T", {}).get("top_vectors", [])[: 2 * len(spectral)]
    on_key = sum(v["is_key"] for v in top)
    rows.append(Claim(
        "top singular vectors are key Fourier modes", "aligned",
        f"{on_key} of the top {len(top)} vectors of E @ W_ih.T have a key frequency "
        f"(mean purity {_pct(sum(v['purity'] for v in top) / max(len(top), 1))})",
        "reproduced" if top and on_key >= ALIGNED * len(top) else f"not: {on_key} of {len(top)}",
        f"at least {_pct(ALIGNED)} of the top {2 * len(spectral)} have a spectral key frequency as their dominant one"))
    fit = fourier_report["fit"]
    for what, name in (("logits", "logits are Fourier multiplication"),
                       ("hidden", "hidden states are Fourier features of a, b, a ± b")):
        fvu = fit[f"{what}_fvu"]
        extra = (f"fitted logits {_pct(fit['logits_fit_accuracy'])} accurate" if what == "logits" else
                 f"{fit['hidden_units_well_explained']} of {fit['hidden_units_alive']} units "
                 f"with R² ≥ {fit['well_explained_r2']:g}")
        rows.append(Claim(
            name, f"fit error {PAPER['fit_error'][0]:g} to {PAPER['fit_error'][1]:g} (measure not stated)",
            f"FVU {fvu:.3g}, relative L2 error {fit[f'{what}_relative_error']:.3g} ({extra})",
            "reproduced" if fvu <= PAPER["fit_error"][1] else
            "not: nothing to fit (no variance)" if fvu != fvu else
            f"not: {fvu / PAPER['fit_error'][1]:.1f}x the paper's upper end",
            f"fraction of variance unexplained (1 − R²) at most {PAPER['fit_error'][1]:g}"))
    singles = [s["accuracy"] for s in ablation_report["single"] if s["is_key"]]
    worst = min(singles) if singles else float("nan")
    rows.append(Claim(
        "removing one key frequency barely hurts", "barely hurts",
        f"worst accuracy after one removal {_pct(worst)}",
        "reproduced" if worst >= ROBUST else "not",
        f"removing any one spectral key frequency keeps at least {_pct(ROBUST)} accuracy on all pairs"))
    cumulative, control = ablation_report["cumulative"], ablation_report["control_non_key"]
    last = cumulative[-1]["accuracy"] if cumulative else float("nan")
    kept = control[-1]["accuracy"] if control else float("nan")
    path = ", ".join(f"{len(c['removed'])}: {_pct(c['accuracy'])}" for c in cumulative)
    rows.append(Claim(
        "removing several destroys accuracy", "collapse",
        f"after removing 1, 2, ...: {path}; control (as many non-key): {_pct(kept)}",
        "reproduced" if last < COLLAPSE and kept >= ROBUST else "not",
        f"removing every spectral key frequency (strongest first) leaves under {_pct(COLLAPSE)}; "
        f"as many non-key ones keep at least {_pct(ROBUST)}"))
    return rows


def _table(header, rows):
    return [f"| {' | '.join(header)} |", f"|{' --- |' * len(header)}",
            *[f"| {' | '.join(map(str, r))} |" for r in rows]]


COMPONENTS = {"E": "embedding E", "U": "input table E @ W_ih.T", "W_out": "readout W_out",
              "hidden": "hidden h_2 over (a, b)", "logits": "logits over c"}


def fourier_tables(r):
    """Markdown: the spectral count by threshold, the energy per component at both sets,
    the fits with both measures."""
    lines = ["Spectral key frequencies by threshold (how the rule's count moves):", ""]
    lines += _table(["threshold", *r["spectral_count_by_threshold"]],
                    [["spectral count", *r["spectral_count_by_threshold"].values()]])
    lines += ["", f"Energy at the key frequencies (share of each component's non-constant energy); "
                  f"spectral set: {_freqs(r['key_frequencies'])}; functional set: "
                  f"{_freqs(r['functional_key_frequencies'])}.", ""]
    lines += _table(["component", "spectral set", "functional set"],
                    [[label, _pct(r["energy_share"][n]), _pct(r["energy_share_fit"][n])]
                     for n, label in COMPONENTS.items()])
    fit = r["fit"]
    lines += ["", f"Fourier-multiplication fits at the functional set ({_freqs(fit['frequencies'])}). "
                  + fourier_measures_text(), ""]
    lines += _table(["fit", "relative L2 error", "FVU (1 − R²)", "also"],
                    [["logits ~ cos/sin w_k(a+b−c) + g(c)", f"{fit['logits_relative_error']:.3g}",
                      f"{fit['logits_fvu']:.3g}", f"fitted logits {_pct(fit['logits_fit_accuracy'])} accurate"],
                     ["hidden ~ 1 + cos/sin w_k(a, b, a+b, a−b)", f"{fit['hidden_relative_error']:.3g}",
                      f"{fit['hidden_fvu']:.3g}",
                      f"{fit['hidden_units_well_explained']} of {fit['hidden_units_alive']} live units "
                      f"({_pct(fit['hidden_share_well_explained'])}) have R² ≥ {fit['well_explained_r2']:g}"]])
    return lines


def running_sum_tables(ps):
    """Markdown: how much of h_t the running sum's and the tokens' key terms explain, and
    W_hh in each key plane."""
    lines = [ps["measures"], "",
             f"| step t | h_t explained by cos/sin(w_k s_t) | by the tokens' cos/sin(w_k x_j), j ≤ t |",
             "| --- | --- | --- |"]
    lines += [f"| {s['t']} | {_pct_or_none(s['fraction_explained'])} | "
              f"{_pct_or_none(s['fraction_explained_by_tokens'])} |" for s in ps["steps"]]
    lines += ["", f"W_hh in each key plane: {ps['rotation_rule']}.", "",
              "| k | in_plane | rotation_score | angle (degrees) | scale |", "| --- | --- | --- | --- | --- |"]
    fmt = lambda v, f="{:.3f}": "—" if v is None else f.format(v)
    lines += [f"| {r['frequency']} | {fmt(r['in_plane'])} | {fmt(r['rotation_score'])} | "
              f"{fmt(r['angle_degrees'], '{:.1f}')} | {fmt(r['scale'])} |" for r in ps["rotation"]]
    if "clock" in ps:
        lines += ["", "![the clock of h_t](clock_through_time.png)"]
    return lines


def fourier_measures_text():
    return ("Relative L2 error is ‖y − fit‖ / ‖y‖; FVU, the fraction of variance unexplained, is "
            "‖y − fit‖² / ‖y − mean y‖² (logits centred per (a, b) row, hidden units centred per unit).")


def control_table(trained, control):
    """Markdown: every measure beside the untrained control (the same architecture at
    initialisation), both at the trained model's functional set so that they compare."""
    t, c = trained, control
    key = t["fourier"]["functional_key_frequencies"]

    def row(label, f):
        return [label, f(t), f(c)]
    rows = [
        row("accuracy on all pairs", lambda m: _pct(m["fourier"]["accuracy_all_pairs"])),
        row("spectral key count (own)", lambda m: len(m["fourier"]["key_frequencies"])),
        row("functional key count (own)", lambda m: len(m["fourier"]["functional_key_frequencies"])),
        *[row(f"energy at S: {label}", lambda m, n=n: _pct(m["fourier"]["energy_share_fit"][n]))
          for n, label in COMPONENTS.items()],
        row("logit fit FVU at S", lambda m: f"{m['fourier']['fit']['logits_fvu']:.3g}"),
        row("hidden fit FVU at S", lambda m: f"{m['fourier']['fit']['hidden_fvu']:.3g}"),
        row("hidden units with R² ≥ 0.85 at S", lambda m: _pct(m["fourier"]["fit"]["hidden_share_well_explained"])),
        row("restricted loss at S (all pairs)", lambda m: f"{m['fourier']['logit_measures']['restricted_loss']:.3g}"),
        row("excluded loss at S (train pairs)", lambda m: f"{m['fourier']['logit_measures']['excluded_loss']:.3g}"),
        row(f"top {2 * len(t['fourier']['key_frequencies'])} singular energy of E @ W_ih.T", lambda m: _pct_or_none(m["svd"]["E @ W_ih.T"].get("energy_share_key_rank"))),
        row("rank of E @ W_ih.T at 90% energy", lambda m: m["svd"]["E @ W_ih.T"]["rank_90"]),
    ]
    return _table(["measure", "trained", "untrained control"], rows)


def markdown(run, summary, fourier_report, svd_report, ablation_report, figures, control=None,
             progress_report=None):
    """The text of report.md (figures are linked by file name, beside it)."""
    lines = [f"# tinymod report: {run}", "", f"The model at step {fourier_report['model_step']}.", ""]
    if summary:
        grok = (f"test accuracy first reached 99% at step {summary['grok_step']} "
                f"({summary['grok_seconds']:.1f} s)" if summary["grok_step"] is not None
                else "test accuracy never reached 99%")
        lines += ["## Training", "",
                  f"Step {summary['step']}: train accuracy {_pct(summary['train_acc'])}, "
                  f"test accuracy {_pct(summary['test_acc'])}; {grok}.", ""]
    if progress_report:
        lines += ["## Through training", "",
                  f"`tinymod progress` measured {len(progress_report['rows'])} snapshots at the final "
                  f"model's functional key frequencies ({_freqs(progress_report['key_frequencies'])}).", ""]
        lines += _table(["phase", "from step", "to step", "rule"],
                        [[ph["name"], ph["start"], f"{ph['end']}{' (open)' if ph['open'] else ''}",
                          progress_report["phase_rules"][ph["name"]]] for ph in progress_report["phases"]])
        lines += ["", "![progress](progress.png)", ""]
    lines += ["## The paper's claims, and ours", ""]
    if not fourier_report["key_frequencies"]:
        lines += [NO_KEY, ""]
    lines += _table(["claim", "paper", "ours", "verdict", "criterion"],
                    claims(fourier_report, svd_report, ablation_report))
    lines += ["", f"Key frequencies: the **functional** set is {fourier_report['functional']['rule']}; "
                  f"the **spectral** set (`key_frequencies`) is {fourier_report['key_rule']}.", ""]
    lines += ["## Fourier structure", "", *fourier_tables(fourier_report), ""]
    lines += ["## The running sum through the sequence", "", *running_sum_tables(fourier_report["partial_sums"]), ""]
    if control:
        lines += ["## Beside an untrained control", "",
                  "The same architecture at initialisation (same seed). Measures taken at a key set "
                  "depend on its size (more frequencies explain more), so both columns use the "
                  "trained model's functional set S; the two counts are each model's own.", ""]
        lines += control_table({"fourier": fourier_report, "svd": svd_report}, control)
        lines.append("")
    lines += ["## Low rank", ""]
    lines += _table(["matrix", "shape", "rank at 90%", "rank at 99%", "energy in top 2 × spectral key"],
                    [[name, f"{e['shape'][0]} × {e['shape'][1]}", e["rank_90"], e["rank_99"],
                      _pct_or_none(e.get("energy_share_key_rank"))] for name, e in svd_report.items()])
    lines += ["", "## Figures", ""]
    lines += [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


# --- each analysis: compute, write its JSON and figures, return the report ---------------

def fourier_report(params, config, threshold=0.25, level=0.99):
    """fourier.analyze at the functional key frequencies, with both key sets, the
    restricted and excluded losses on the run's own split, and the running-sum analysis."""
    from tinymod import ablate, fourier, partial_sums
    from tinymod.data import make_dataset
    seq_len = config.get("seq_len", 2)
    _, strength = fourier.weight_key_frequencies(params, threshold)
    functional = ablate.functional_key_frequencies(params, config["activation"],
                                                   fourier.strength_order(strength), level, seq_len)
    ds = make_dataset(config["p"], seq_len, config["frac"], config["seed"])
    report, tables = fourier.analyze_tables(params, config["activation"], threshold,
                                            functional["frequencies"], (ds.x_train, ds.x_test), seq_len)
    report["functional_key_frequencies"] = functional["frequencies"]
    report["functional"] = functional
    report["partial_sums"] = partial_sums.analyze(tables, functional["strongest_first"], config["p"])
    return report


def run_fourier(params, config, folder, threshold=0.25, level=0.99):
    from tinymod import plots
    report = {"model_step": config["step"], **fourier_report(params, config, threshold, level)}
    runs.write_json(Path(folder) / "fourier.json", report)
    plots.fourier_spectra(report, Path(folder) / "fourier_spectra.png")
    if report["hidden_spectrum_2d"] is not None:              # two tokens
        plots.hidden_spectrum_2d(report, Path(folder) / "hidden_spectrum_2d.png")
        plots.neurons_per_frequency(report, Path(folder) / "neurons_per_frequency.png")
    plots.clock(report, Path(folder) / "clock.png")
    if "clock" in report["partial_sums"]:
        plots.clock_through_time(report["partial_sums"], Path(folder) / "clock_through_time.png")
    return report


def run_svd(params, config, folder, threshold=0.25):
    """svd.json at the spectral key frequencies (2 singular values per frequency that holds energy)."""
    from tinymod import fourier, plots, rank
    key, _ = fourier.weight_key_frequencies(params, threshold)
    report = rank.analyze(params, config["activation"], key)
    runs.write_json(Path(folder) / "svd.json", {"model_step": config["step"], "key_frequencies": key,
                                                "key_set": "spectral", "matrices": report})
    plots.singular_values(report, Path(folder) / "singular_values.png")
    return report


def run_ablate(params, config, folder, threshold=0.25, site="both", seeds=5):
    """ablation.json over the spectral key frequencies, strongest first: removing every
    frequency that holds energy is what must leave no path for the answer."""
    from tinymod import ablate, fourier, plots
    key, strength = fourier.weight_key_frequencies(params, threshold)
    report = ablate.analyze(params, config, key, strength, site, seeds)
    report["key_set"] = "spectral"
    runs.write_json(Path(folder) / "ablation.json", {"model_step": config["step"], **report})
    plots.ablation_single(report, Path(folder) / "ablation_single.png")
    plots.ablation_cumulative(report, Path(folder) / "ablation_cumulative.png")
    return report


def run_progress(folder, config, key, out=None, on_row=None):
    """progress.json and progress.png for the run in `folder`, at the frequencies `key`."""
    from tinymod import plots, progress
    out = Path(out or folder)
    report = progress.analyze(folder, config, key, on_row)
    runs.write_json(out / "progress.json", {"model_step": config["step"], **report})
    plots.progress(report, out / "progress.png")
    return report


def untrained_control(params, config, key, spectral, threshold=0.25):
    """The same architecture at initialisation (the run's seed and dtype), measured like the
    trained model at the trained model's key sets (`key`, functional, for the Fourier
    measures; `spectral` for the SVD), with its own key counts."""
    from tinymod import ablate, fourier, rank, rnn
    from tinymod.data import make_dataset
    p, D = params["E"].shape
    fresh = rnn.init_params(p, D, params["W_hh"].shape[0], config.get("seed", 0),
                            config.get("dtype", "float32"))
    seq_len = config.get("seq_len", 2)
    _, strength = fourier.weight_key_frequencies(fresh, threshold)
    own = ablate.functional_key_frequencies(fresh, config["activation"], fourier.strength_order(strength),
                                            seq_len=seq_len)
    ds = make_dataset(p, seq_len, config["frac"], config["seed"])
    report = fourier.analyze(fresh, config["activation"], threshold, key, (ds.x_train, ds.x_test), seq_len)
    report["functional_key_frequencies"] = own["frequencies"]
    return {"fourier": report, "svd": rank.analyze(fresh, config["activation"], spectral)}


def run_report(params, config, folder, summary=None, threshold=0.25, snapshots=True):
    """Every analysis, report.md, and the claims (progress too when the run has snapshots)."""
    fourier = run_fourier(params, config, folder, threshold)
    key = fourier["functional_key_frequencies"]
    svd = run_svd(params, config, folder, threshold)
    ablation = run_ablate(params, config, folder, threshold)
    control = untrained_control(params, config, key, fourier["key_frequencies"], threshold)
    runs.write_json(Path(folder) / "control.json", {"model_step": config["step"],
        "what": "the same architecture at initialisation, measured at the trained model's key sets",
        "key_frequencies": key, **control})
    progress_report = (run_progress(folder, config, key)
                       if snapshots and runs.list_snapshots(folder) else None)
    figures = [name for name in runs.TRAINING_FIGURES + runs.ANALYSIS_FIGURES if (Path(folder) / name).exists()]
    text = markdown(folder, summary, fourier, svd, ablation, figures, control, progress_report)
    return runs.write_text(Path(folder) / "report.md", text), claims(fourier, svd, ablation)
