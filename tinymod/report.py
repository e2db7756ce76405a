"""One report of the whole story: training, Fourier structure, low rank and ablation,
with our numbers beside the paper's claims (Rangamani, ICASSP 2025)."""
import json
import math
from pathlib import Path
from typing import NamedTuple

from tinymod import runs

PAPER = {
    "key_frequencies": 6,
    "energy": (0.854, 0.955),
    "fit_error": (1e-3, 1e-2),
}
FEW = 10          # "a few": the in-use set has at most min(FEW, floor(p/2) / 2) frequencies
SPARSE_SHARE = 0.9   # ... and holds at least this share of the logit energy
COUNT_FACTOR = 2  # the count matches the paper's 6 within this factor
ALIGNED = 0.8     # top 2K singular vectors: at least this share on a key frequency
ROBUST = 0.95     # one key frequency removed: accuracy stays at least this
COLLAPSE = 0.10   # every key frequency removed: accuracy falls below this
CIRCUIT = 2.0     # restricted loss at most this times the model's (or ln(1/0.99))


def _pct(x):
    return f"{100 * x:.1f}%"


def _pct_or_none(x):
    return "none (no key frequency)" if x is None or x != x else _pct(x)


def _freqs(key):
    return " ".join(map(str, key)) or "none"


def _counts(counts, unit):
    return "/".join(map(str, counts.values())) + f" at {unit} " + "/".join(counts)


class Claim(NamedTuple):
    claim: str
    paper: str
    ours: str
    verdict: str
    criterion: str
    why: str


NO_KEY = ("**No frequency qualifies as key:** no frequency holds any share of the non-constant "
          "energy of E, E @ W_ih.T and W_out (all-zero or constant weights, for example), so the "
          "model carries no Fourier structure and none of the paper's claims can hold for it.")
NONE_IN_USE = "removing no single frequency doubles the loss: the model uses none"


def sparsity_claim(f):
    used, K = f["key_sets"]["in_use"], f["p"] // 2
    n, share, most = used["size"], used["logit_energy_share"], max(1, min(FEW, K // 2))
    ok = 1 <= n <= most and share >= SPARSE_SHARE
    why = (NONE_IN_USE if n == 0 else
           f"{n} of {K} frequencies is more than {most}" if n > most else
           f"the {n} in use hold only {_pct(share)} of the logit energy" if share < SPARSE_SHARE else
           f"{n} of {K} frequencies hold {_pct(share)} of the logit energy; removing any other one "
           f"alone changes the loss by less than {used['factor']:g}x")
    return Claim("a few frequencies carry the computation (sparse Fourier structure)", f"a few of {K}",
                 f"{n} in use: {_freqs(used['frequencies'])} ({_pct(share)} of the logit energy)",
                 "reproduced" if ok else "not", f"the in-use set has 1 to {most} of {K} frequencies "
                 f"and holds at least {_pct(SPARSE_SHARE)} of the logit energy", why)


def count_claim(f):
    n, paper = len(f["in_use_key_frequencies"]), PAPER["key_frequencies"]
    lo, hi = paper // COUNT_FACTOR, paper * COUNT_FACTOR
    by_factor = f["in_use_counts_by_factor"]
    edge = ("the same at every factor, in a gap" if len(set(by_factor.values())) == 1 else
            f"it moves from {max(by_factor.values())} to {min(by_factor.values())} between factors "
            f"{min(by_factor, key=float)} and {max(by_factor, key=float)}")
    why = (NONE_IN_USE if n == 0 else
           f"{n} is {'within' if lo <= n <= hi else 'outside'} a factor {COUNT_FACTOR} of {paper}; {edge}")
    return Claim("about six key frequencies", f"{paper}",
                 f"in use {n} ({_counts(by_factor, 'factors')}); functional "
                 f"{len(f['functional_key_frequencies'])} ({_counts(f['functional_counts_by_level'], 'levels')}); "
                 f"spectral {len(f['key_frequencies'])} (threshold {f['threshold']:g})",
                 "reproduced" if lo <= n <= hi else "not",
                 f"the in-use count is within a factor {COUNT_FACTOR} of {paper} ({lo} to {hi})", why)


def fit_claim(f):
    fits, top = f["fits"]["in_use"], PAPER["fit_error"][1]
    crit = (f"every pre-activation fit at the in-use set (h_t^pre on cos/sin of its frequencies) has "
            f"error at most {top:g}, read as FVU and as relative L2 (the paper does not say which)")
    claim = "hidden pre-activations are cos/sin of the key frequencies"
    paper = f"relative error {PAPER['fit_error'][0]:g} to {top:g}"
    if fits is None:
        return Claim(claim, paper, "no fit (no frequency in use)", "not", crit, NONE_IN_USE)
    pre = {name: e for name, e in fits.items() if name.endswith("preactivation")}
    worst_fvu, worst_l2 = max(e["fvu"] for e in pre.values()), max(e["relative_l2"] for e in pre.values())
    as_fvu, as_l2 = worst_fvu <= top, worst_l2 <= top
    verdict = ("reproduced under both readings" if as_fvu and as_l2 else
               "reproduced as FVU, not as relative L2" if as_fvu else "not under either reading")
    ours = "; ".join(f"{name}: FVU {e['fvu']:.2g}, relative L2 {e['relative_l2']:.2g}" for name, e in pre.items())
    why = (f"as FVU: worst {worst_fvu:.2g} {'≤' if as_fvu else '>'} {top:g}; "
           f"as relative L2: worst {worst_l2:.2g} {'≤' if as_l2 else '>'} {top:g}")
    return Claim(claim, paper, ours, verdict, crit, why)


def circuit_claim(f):
    used, p = f["key_sets"]["in_use"], f["p"]
    bound = max(CIRCUIT * f["model_loss"], math.log(1 / 0.99))
    floor = math.log(p) / 2
    crit = (f"at the in-use set the restricted loss (all tuples) is at most max({CIRCUIT:g} × the model's "
            f"loss, ln(1/0.99)) and the excluded loss (train tuples) at least ln(p)/2 = {floor:.2f}")
    claim = "the logits are Fourier multiplication at the frequencies in use"
    if not used["size"]:
        return Claim(claim, "the mechanism", "no frequency in use", "not", crit, NONE_IN_USE)
    r, e = used["restricted_loss"], used["excluded_loss"]
    ok = r <= bound and e >= floor
    why = (f"keeping only their terms the loss is {r:.3g} (model {f['model_loss']:.3g}, bound {bound:.3g}); "
           f"taking them out leaves {e:.3g} on the train tuples (ln p = {math.log(p):.2f})")
    return Claim(claim, "the mechanism", f"restricted loss {r:.3g}, excluded loss {e:.3g}, "
                 f"logit fit FVU {f['fits']['in_use']['logits']['fvu']:.3g}",
                 "reproduced" if ok else "not", crit, why)


def energy_claims(f, svd_report):
    rows, spectral = [], f["key_frequencies"]
    shares = {name: e["energy_share_key_rank"] for name, e in svd_report.items()
              if "energy_share_key_rank" in e}
    if shares:
        lo, hi = min(shares, key=shares.get), max(shares, key=shares.get)
        below = [n for n, v in shares.items() if v < PAPER["energy"][0]]
        r, rank = 2 * len(spectral), max(min(svd_report[n]["shape"]) for n in shares)
        low = r <= rank / 2
        why = (f"{r} singular values are more than half of the largest rank, {rank}: nothing low about that"
               if not low else "every matrix clears the bar" if not below else
               "below the bar: " + ", ".join(f"{n} {_pct(shares[n])}" for n in below))
        rows.append(Claim(
            "significant singular components (2 per key frequency) hold most energy",
            f"{_pct(PAPER['energy'][0])} to {_pct(PAPER['energy'][1])}",
            f"{_pct(shares[lo])} ({lo}) to {_pct(shares[hi])} ({hi})",
            "not" if not low else "reproduced" if not below else
            f"partly: {len(shares) - len(below)} of {len(shares)} matrices" if len(below) < len(shares) else "not",
            f"the top {r} singular values (2 per spectral key frequency), at most half of the largest "
            f"matrix's rank, hold at least {_pct(PAPER['energy'][0])} of every matrix's energy", why))
    top = svd_report.get("E @ W_ih.T", {}).get("top_vectors", [])[: 2 * len(spectral)]
    on_key, K = sum(v["is_key"] for v in top), f["p"] // 2
    few = len(spectral) <= K / 2
    ok = top and few and on_key >= ALIGNED * len(top)
    rows.append(Claim(
        "top singular vectors are key Fourier modes", "aligned",
        f"{on_key} of the top {len(top)} vectors of E @ W_ih.T have a key frequency "
        f"(mean purity {_pct(sum(v['purity'] for v in top) / max(len(top), 1))})",
        "reproduced" if ok else f"not: {on_key} of {len(top)}",
        f"the spectral set has at most half of the {K} frequencies, and at least {_pct(ALIGNED)} of the "
        f"top {2 * len(spectral)} vectors have one of them as their dominant frequency",
        "no spectral key frequency" if not top else
        f"the spectral set holds {len(spectral)} of {K} frequencies, so any vector is likely on one" if not few else
        f"{on_key} of {len(top)} = {_pct(on_key / len(top))} {'≥' if on_key >= ALIGNED * len(top) else '<'} {_pct(ALIGNED)}"))
    return rows


def ablation_claims(ablation_report):
    singles = [s for s in ablation_report["single"] if s["is_key"]]
    worst = min(singles, key=lambda s: s["accuracy"]) if singles else None
    rows = [Claim(
        "removing one key frequency barely hurts", "barely hurts",
        f"worst accuracy after one removal {_pct(worst['accuracy']) if worst else 'none'}",
        "reproduced" if worst and worst["accuracy"] >= ROBUST else "not",
        f"removing any one spectral key frequency keeps at least {_pct(ROBUST)} accuracy on all pairs",
        "no spectral key frequency" if not worst else
        f"the worst, k = {worst['frequency']}, leaves {_pct(worst['accuracy'])} "
        f"({'≥' if worst['accuracy'] >= ROBUST else '<'} {_pct(ROBUST)})")]
    cumulative, control = ablation_report["cumulative"], ablation_report["control_non_key"]
    last = cumulative[-1]["accuracy"] if cumulative else float("nan")
    kept = control[-1]["accuracy"] if control else float("nan")
    path = ", ".join(f"{len(c['removed'])}: {_pct(c['accuracy'])}" for c in cumulative)
    ok = last < COLLAPSE and kept >= ROBUST
    rows.append(Claim(
        "removing several destroys accuracy", "collapse",
        f"after removing 1, 2, ...: {path}; control (as many non-key): {_pct(kept)}",
        "reproduced" if ok else "not",
        f"removing every spectral key frequency (strongest first) leaves under {_pct(COLLAPSE)}; "
        f"as many non-key ones keep at least {_pct(ROBUST)}",
        "no spectral key frequency" if not cumulative else
        f"all {len(cumulative)} removed: {_pct(last)} ({'<' if last < COLLAPSE else '≥'} {_pct(COLLAPSE)}); "
        f"the control keeps {_pct(kept)} ({'≥' if kept >= ROBUST else '<'} {_pct(ROBUST)})"))
    return rows


def claims(fourier_report, svd_report, ablation_report):
    """One Claim per claim of the paper, each verdict with its one-sided criterion and why.
    Sparsity, the count, the fit and the mechanism use the in-use set (what the model
    uses); low rank and ablation use the spectral set (where the energy sits: removing all
    of it must leave no path)."""
    f = fourier_report
    return [sparsity_claim(f), count_claim(f), *energy_claims(f, svd_report), fit_claim(f),
            circuit_claim(f), *ablation_claims(ablation_report)]


def _table(header, rows):
    return [f"| {' | '.join(header)} |", f"|{' --- |' * len(header)}",
            *[f"| {' | '.join(map(str, r))} |" for r in rows]]


COMPONENTS = {"E": "embedding E", "U": "input table E @ W_ih.T", "W_out": "readout W_out",
              "hidden": "hidden h_2 over (a, b)", "logits": "logits over c"}


SET_FIELDS = {"in_use": "in_use_key_frequencies", "functional": "functional_key_frequencies",
              "spectral": "key_frequencies"}


def key_set_tables(r):
    """Markdown: the three named sets with their rules, shares and Nanda's losses; the counts
    by threshold, level and factor; the key curve."""
    lines = _table(["set", "frequencies", "logit energy", "restricted loss (all)", "excluded loss (train)", "rule"],
                   [[name.replace("_", "-"), _freqs(e["frequencies"]), _pct(e["logit_energy_share"]),
                     f"{e['restricted_loss']:.3g}", f"{e['excluded_loss']:.3g}", e["rule"]]
                    for name, e in r["key_sets"].items()])
    lines += ["", f"The model's own loss over all tuples is {r['model_loss']:.3g}, ln p = {math.log(r['p']):.2f}. "
                  "Counts as each rule's bar moves:", ""]
    lines += _table(["in-use factor", *r["in_use_counts_by_factor"]], [["count", *r["in_use_counts_by_factor"].values()]])
    lines += [""] + _table(["functional level", *r["functional_counts_by_level"]],
                           [["count", *r["functional_counts_by_level"].values()]])
    lines += [""] + _table(["spectral threshold", *r["spectral_count_by_threshold"]],
                           [["count", *r["spectral_count_by_threshold"].values()]])
    lines += ["", f"The key curve ({r['key_curve_rule']}):", ""]
    lines += _table(["n", "k", "logit energy", "restricted", "excluded (train)", "keep-only acc", "keep-only loss",
                     "removal ratio", "sets"],
                    [[c["n"], c["frequency"], _pct(c["energy_share"]), f"{c['restricted_loss']:.3g}",
                      f"{c['excluded_loss']:.3g}", _pct(c["keep_accuracy"]), f"{c['keep_loss']:.3g}",
                      f"{c['removal_loss_ratio']:.3g}",
                      " ".join(n for n, field in SET_FIELDS.items() if c["frequency"] in r[field]) or "—"]
                     for c in r["key_curve"]])
    return lines + ["", "![the key curve](key_curve.png)"]


def fourier_tables(r):
    """Markdown: the energy per component at each set, the fits of named objects per set."""
    lines = [f"Energy at each set (share of each component's non-constant energy).", ""]
    lines += _table(["component", *[name.replace("_", "-") for name in SET_FIELDS]],
                    [[label, *[_pct(r["energy_share_by_set"][s][n]) for s in SET_FIELDS]]
                     for n, label in COMPONENTS.items()])
    fits = r["fits"]
    lines += ["", f"Fits of named objects ({fits['measures']}):", ""]
    for rule in (fits["rule"]["T = 2" if r["seq_len"] == 2 else "T > 2"], fits["rule"]["all"]):
        lines.append(f"- {rule}")
    lines.append("")
    rows = []
    for name in ("in_use", "functional"):
        for obj, e in (fits[name] or {}).items():
            rows.append([name.replace("_", "-"), obj, f"{e['fvu']:.3g}", f"{e['fvu_median_unit']:.3g}",
                         f"{e['relative_l2']:.3g}", e["units_constant"]])
    lines += _table(["set", "object", "FVU (pooled)", "FVU (median unit)", "relative L2 (√FVU)", "constant units"],
                    rows) if rows else ["No fits: both sets are empty."]
    own = ", ".join(f"{_pct(fits[n][o]['share_well_explained_ours'])} at the {n.replace('_', '-')} set"
                    for n in ("in_use", "functional") if fits[n] for o in fits[n] if "share_well_explained_ours" in fits[n][o])
    nanda = fits["share_well_explained_nanda"]
    lines += ["", "Well-explained hidden units: "
              + (f"Nanda's measure ({fits['share_rules']['nanda']}): {_pct(nanda)}; " if nanda is not None else "")
              + f"ours ({fits['share_rules']['ours']}): {own or 'none'}."]
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


def control_table(trained, control):
    """Markdown: every measure beside the untrained control (the same architecture at
    initialisation), the Fourier measures at the trained model's in-use set so that they compare."""
    t, c = trained, control

    def row(label, f):
        return [label, f(t), f(c)]

    def at_s(m, section):              # the trained model's own in-use entry, or the control's at it
        entries = m["fourier"][section]
        return entries["trained_in_use"] if "trained_in_use" in entries else entries["in_use"]

    def fit(name):
        return lambda m: "—" if at_s(m, "fits") is None else f"{at_s(m, 'fits')[name]['fvu']:.3g}"
    rows = [
        row("accuracy on all pairs", lambda m: _pct(m["fourier"]["accuracy_all_pairs"])),
        *[row(f"{name.replace('_', '-')} key count (own)", lambda m, f=field: len(m["fourier"][f]))
          for name, field in SET_FIELDS.items()],
        *[row(f"energy at S: {label}", lambda m, n=n: _pct(at_s(m, "energy_share_by_set")[n]))
          for n, label in COMPONENTS.items()],
        row("h1 pre-activation fit FVU at S", fit("h1_preactivation")),
        row("logit fit FVU at S", fit("logits")),
        row("restricted loss at S (all pairs)", lambda m: f"{at_s(m, 'key_sets')['restricted_loss']:.3g}"),
        row("excluded loss at S (train pairs)", lambda m: f"{at_s(m, 'key_sets')['excluded_loss']:.3g}"),
        row(f"top {2 * len(t['fourier']['key_frequencies'])} singular energy of E @ W_ih.T", lambda m: _pct_or_none(m["svd"]["E @ W_ih.T"].get("energy_share_key_rank"))),
        row("rank of E @ W_ih.T at 90% energy", lambda m: m["svd"]["E @ W_ih.T"]["rank_90"]),
    ]
    return _table(["measure", "trained", "untrained control"], rows)


def run_kernels(folder):
    """The BLAS kernels the run in `folder` trained with, as its config.json records them."""
    try:
        blas = json.loads((Path(folder) / runs.CONFIG).read_text()).get("blas") or []
        return ", ".join(f"{b['internal_api']} {b.get('architecture') or ''}".strip() for b in blas) or None
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None


def one_sample(config, kernels=None):
    """The line that says a single run's counts and verdicts are one sample."""
    return (f"These counts and verdicts are **one sample**: seed {config.get('seed')}, BLAS kernels "
            f"{kernels or 'not recorded'} (config.json). A run's numbers change with the seed and with the kernels a CPU "
            f"picks; the claims over seeds, from `make sweep` (runs/sweep/sweep_report.md), are the robust answer.")


def markdown(run, summary, fourier_report, svd_report, ablation_report, figures, control=None,
             progress_report=None, config=None, kernels=None):
    """The text of report.md (figures are linked by file name, beside it)."""
    f = fourier_report
    lines = [f"# tinymod report: {run}", "", f"The model at step {f['model_step']}.", ""]
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
                  f"model's in-use key frequencies ({_freqs(progress_report['key_frequencies'])}).", ""]
        lines += _table(["phase", "from step", "to step", "rule"],
                        [[ph["name"], ph["start"], f"{ph['end']}{' (open)' if ph['open'] else ''}",
                          progress_report["phase_rules"][ph["name"]]] for ph in progress_report["phases"]])
        lines += ["", "![progress](progress.png)", ""]
    lines += ["## The paper's claims, and ours", "", one_sample(config or {}, kernels), ""]
    if not f["key_frequencies"]:
        lines += [NO_KEY, ""]
    lines += _table(["claim", "paper", "ours", "verdict", "criterion", "why"], claims(f, svd_report, ablation_report))
    lines += ["", "## Which frequencies the model uses", "", *key_set_tables(f), ""]
    lines += ["## Fourier structure", "", *fourier_tables(f), ""]
    lines += ["## The running sum through the sequence", "", *running_sum_tables(f["partial_sums"]), ""]
    if control:
        lines += ["## Beside an untrained control", "",
                  "The same architecture at initialisation (same seed). Measures taken at a key set "
                  "depend on its size (more frequencies explain more), so both columns use the "
                  "trained model's in-use set S; the counts are each model's own.", ""]
        lines += control_table({"fourier": f, "svd": svd_report}, control)
        lines.append("")
    lines += ["## Low rank", ""]
    lines += _table(["matrix", "shape", "rank at 90%", "rank at 99%", "energy in top 2 × spectral key"],
                    [[name, f"{e['shape'][0]} × {e['shape'][1]}", e["rank_90"], e["rank_99"],
                      _pct_or_none(e.get("energy_share_key_rank"))] for name, e in svd_report.items()])
    lines += ["", "## Figures", ""]
    lines += [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


# --- each analysis: compute, write its JSON and figures, return the report ---------------

def fourier_report(params, config, threshold=0.25, extra_sets=None):
    """The Fourier picture of a model (fourier.analyze_tables), its three named key sets and
    key curve (keysets), the fits of named objects at the in-use and functional sets (fits)
    and the running-sum analysis at the in-use set, strongest first. `extra_sets` ({name:
    freqs}) are measured too (the untrained control at the trained model's set)."""
    from tinymod import fits, fourier, keysets, partial_sums
    from tinymod.data import make_dataset
    seq_len, activation = config.get("seq_len", 2), config["activation"]
    ds = make_dataset(config["p"], seq_len, config["frac"], config["seed"])
    split = (ds.x_train, ds.x_test)
    report, tables = fourier.analyze_tables(params, activation, threshold, seq_len)
    report.update(keysets.analyze(params, activation, seq_len, tables["logits"], report["key_frequencies"],
                                  report["key_rule"], split))
    sets = {name: report[field] for name, field in SET_FIELDS.items()}
    extra_sets = extra_sets or {}
    for name, freqs in extra_sets.items():
        report["key_sets"][name] = keysets.set_summary(freqs, "given", keysets.logit_energy(tables["logits"]),
                                                       tables["logits"], split)
    report["energy_share_by_set"] = {name: fourier.energy_shares_at(tables["spectra"], tables["totals"], freqs)
                                     for name, freqs in {**sets, **extra_sets}.items()}
    report["fits"] = fits.analyze(params, activation, seq_len, tables["logits"], tables["hidden"],
                                  {"in_use": sets["in_use"], "functional": sets["functional"], **extra_sets})
    used = [k for k in report["strength_order"] if k in sets["in_use"]]
    report["partial_sums"] = partial_sums.analyze(tables, used, config["p"])
    return report


def run_fourier(params, config, folder, threshold=0.25):
    from tinymod import plots
    report = {"model_step": config["step"], **fourier_report(params, config, threshold)}
    runs.write_json(Path(folder) / "fourier.json", report)
    plots.fourier_spectra(report, Path(folder) / "fourier_spectra.png")
    plots.key_curve(report, Path(folder) / "key_curve.png")
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
    trained model: its own key sets, and at the trained model's in-use set `key` (as
    `trained_in_use`) for the Fourier measures and its spectral set `spectral` for the SVD."""
    from tinymod import rank, rnn
    p, D = params["E"].shape
    fresh = rnn.init_params(p, D, params["W_hh"].shape[0], config.get("seed", 0),
                            config.get("dtype", "float32"))
    report = fourier_report(fresh, config, threshold, {"trained_in_use": list(key)})
    return {"fourier": report, "svd": rank.analyze(fresh, config["activation"], spectral)}


def run_report(params, config, folder, summary=None, threshold=0.25, snapshots=True):
    """Every analysis, report.md, and the claims (progress too when the run has snapshots)."""
    fourier = run_fourier(params, config, folder, threshold)
    key = fourier["in_use_key_frequencies"]
    svd = run_svd(params, config, folder, threshold)
    ablation = run_ablate(params, config, folder, threshold)
    control = untrained_control(params, config, key, fourier["key_frequencies"], threshold)
    runs.write_json(Path(folder) / "control.json", {"model_step": config["step"],
        "what": "the same architecture at initialisation, measured at the trained model's key sets",
        "key_frequencies": key, **control})
    progress_report = (run_progress(folder, config, key)
                       if snapshots and runs.list_snapshots(folder) else None)
    figures = [name for name in runs.TRAINING_FIGURES + runs.ANALYSIS_FIGURES if (Path(folder) / name).exists()]
    text = markdown(folder, summary, fourier, svd, ablation, figures, control, progress_report, config,
                    run_kernels(folder))
    return runs.write_text(Path(folder) / "report.md", text), claims(fourier, svd, ablation)
