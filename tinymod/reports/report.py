"""report.md, rendered from the analyses that tinymod.reports.pipeline computes and writes;
nothing here computes a measure (the commands' console text is tinymod.reports.console)."""
import math

from tinymod.analysis.keysets import SET_FIELDS
from tinymod.analysis.tabulate import components
from tinymod.analysis.records import ClockPizza, FourierRecord
from tinymod.reports.claims import NO_KEY, Claim, freqs_text, pct, pct_or_none
from tinymod.reports.claims import tally as claims_tally
from tinymod.training import runs


def _table(header, rows):
    return [f"| {' | '.join(header)} |", f"|{' --- |' * len(header)}",
            *[f"| {' | '.join(map(str, r))} |" for r in rows]]


def key_set_tables(r: FourierRecord) -> list[str]:
    """Markdown: the three named sets with their rules, shares and Nanda's losses; the counts
    by threshold, level and factor; the key curve."""
    lines = _table(["set", "frequencies", "logit energy", "restricted loss (all)", "excluded loss (train)", "rule"],
                   [[name.replace("_", "-"), freqs_text(e["frequencies"]), pct(e["logit_energy_share"]),
                     f"{e['restricted_loss']:.3g}", f"{e['excluded_loss']:.3g}", e["rule"]]
                    for name, e in r["key_sets"].items()])
    lines += ["", f"The model's own loss over all tuples is {r['model_loss']:.3g}, ln p = {math.log(r['p']):.2f}. "
                  "Counts as each rule's bar moves:", ""]
    lines += _table(["in-use factor", *r["in_use_counts_by_factor"]], [["count", *r["in_use_counts_by_factor"].values()]])
    lines += [""] + _table(["functional level", *r["functional_counts_by_level"]],
                           [["count", *r["functional_counts_by_level"].values()]])
    lines += [""] + _table(["spectral threshold", *r["spectral_count_by_threshold"]],
                           [["count", *r["spectral_count_by_threshold"].values()]])
    sets = {name: r["key_sets"][name]["frequencies"] for name in SET_FIELDS}     # in SET_FIELDS' order
    lines += ["", f"The key curve ({r['key_curve_rule']}):", ""]
    lines += _table(["n", "k", "logit energy", "restricted", "excluded (train)", "keep-only acc", "keep-only loss",
                     "removal ratio", "sets"],
                    [[c["n"], c["frequency"], pct(c["energy_share"]), f"{c['restricted_loss']:.3g}",
                      f"{c['excluded_loss']:.3g}", pct(c["keep_accuracy"]), f"{c['keep_loss']:.3g}",
                      f"{c['removal_loss_ratio']:.3g}",
                      " ".join(n for n, members in sets.items() if c["frequency"] in members) or "—"]
                     for c in r["key_curve"]])
    return lines + ["", f"![the key curve]({runs.KEY_CURVE_PNG})"]


def fourier_tables(r: FourierRecord) -> list[str]:
    """Markdown: the energy per component at each set, the fits of named objects per set."""
    lines = ["Energy at each set (share of each component's non-constant energy).", ""]
    lines += _table(["component", *[name.replace("_", "-") for name in SET_FIELDS]],
                    [[label, *[pct(r["energy_share_by_set"][s][n]) for s in SET_FIELDS]]
                     for n, label in components(r["seq_len"]).items()])
    fits = r["fits"]
    lines += ["", f"Fits of named objects ({fits['measures']}):", ""]
    applies = fits.get("applies") or ("T = 2" if r["seq_len"] == 2 else "T > 2")      # older files lack it
    for rule in (fits["rule"][applies], fits["rule"]["all"]):
        lines.append(f"- {rule}")
    lines.append("")
    rows = []
    for name in ("in_use", "functional"):
        for obj, e in (fits[name] or {}).items():
            rows.append([name.replace("_", "-"), obj, f"{e['fvu']:.3g}", f"{e['fvu_median_unit']:.3g}",
                         f"{e['relative_l2']:.3g}", e["units_constant"]])
    lines += _table(["set", "object", "FVU (pooled)", "FVU (median unit)", "relative L2 (√FVU)", "constant units"],
                    rows) if rows else ["No fits: both sets are empty."]
    own = ", ".join(f"{pct(fits[n][o]['share_well_explained_ours'])} at the {n.replace('_', '-')} set"
                    for n in ("in_use", "functional") if fits[n] for o in fits[n] if "share_well_explained_ours" in fits[n][o])
    nanda = fits["share_well_explained_nanda"]
    lines += ["", "Well-explained hidden units: "
              + (f"Nanda's measure ({fits['share_rules']['nanda']}): {pct(nanda)}; " if nanda is not None else "")
              + f"ours ({fits['share_rules']['ours']}): {own or 'none'}."]
    return lines


def running_sum_tables(ps):
    """Markdown: how much of h_t the running sum's and the tokens' key terms explain, and
    W_hh in each key plane."""
    lines = [f"At the in-use set ({freqs_text(ps['key_frequencies'])}), strongest first. {ps['measures']}", "",
             "| step t | h_t explained by cos/sin(w_k s_t) | by the tokens' cos/sin(w_k x_j), j ≤ t |",
             "| --- | --- | --- |"]
    lines += [f"| {s['t']} | {pct_or_none(s['fraction_explained'])} | "
              f"{pct_or_none(s['fraction_explained_by_tokens'])} |" for s in ps["steps"]]
    if ps["carried"]:
        vanilla = "next_by_tokens" in ps["carried"][0]
        lines += ["", "What the recurrence passes on from step t (the object that carries information forward):", "",
                  "| t | object | explained by cos/sin(w_k s_t) | by the tokens' terms |"
                  + (" next pre-activation by (s_t, x_{t+1}) | by the tokens x_1..x_{t+1} |" if vanilla else ""),
                  "| --- | --- | --- | --- |" + (" --- | --- |" if vanilla else "")]
        lines += [f"| {c['t']} | {c['object']} | {pct_or_none(c['by_sum'])} | {pct_or_none(c['by_tokens'])} |"
                  + (f" {pct_or_none(c['next_by_sum_and_token'])} | {pct_or_none(c['next_by_tokens'])} |" if vanilla else "")
                  for c in ps["carried"]]
    if ps["same_map"]:
        lines += ["", "Is the carried clock one map at every step? The cosine between consecutive steps' maps "
                      "s -> mean message: " + ", ".join(f"{m['object']} t = {m['from']} to {m['to']}: "
                      + ("—" if m["cosine"] is None else f"{m['cosine']:.2f}") for m in ps["same_map"]) + "."]
    lines += ["", f"W_hh in each in-use frequency's plane: {ps['rotation_rule']}."]
    fmt = lambda v, f="{:.3f}": "—" if v is None else f.format(v)
    if ps["rotation"] is not None:
        lines += ["", "| k | in_plane | rotation_score | angle (degrees) | scale |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {r['frequency']} | {fmt(r['in_plane'])} | {fmt(r['rotation_score'])} | "
                  f"{fmt(r['angle_degrees'], '{:.1f}')} | {fmt(r['scale'])} |" for r in ps["rotation"]]
    if "clock" in ps:
        lines += ["", f"![the clock of h_t]({runs.CLOCK_THROUGH_TIME_PNG})"]
    return lines


def clock_pizza_tables(cp: ClockPizza) -> list[str]:
    """Markdown: per named set the label and its measures; per frequency in use the split."""
    fmt = lambda v: "—" if v is None or v != v else f"{v:.3g}"
    lines = [f"The label: {cp['label_rule']}.", "",
             "| set | label | share of the logit variance | kappa (Clock form) | phi (difference-dependent form) "
             "| pizza excess | chance level |", "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {name.replace('_', ' ')} | {s['label']} | {pct_or_none(s['variance_share'])} | {fmt(s['kappa'])} | "
              f"{fmt(s['phi'])} | {fmt(s['pizza_excess'])} | {fmt(s['chance'])} |" for name, s in cp["sets"].items()]
    used = set(cp["sets"]["in_use"]["frequencies"])
    lines += ["", f"Each in-use frequency's logits along the answer axis, split into {', '.join(cp['terms'])} "
                  "terms (shares of its variance):", "",
              "| k | share of the logit variance | " + " | ".join(cp["terms"]) + " | pizza excess | chance |",
              "| --- | --- | " + " | ".join("---" for _ in cp["terms"]) + " | --- | --- |"]
    lines += [f"| {r['frequency']} | {pct(r['variance_share'])} | " + " | ".join(fmt(r["terms"][t]) for t in cp["terms"])
              + f" | {fmt(r['pizza_excess'])} | {fmt(r['chance'])} |" for r in cp["frequencies"] if r["frequency"] in used]
    lines += ["", f"Zhong et al.'s measures: distance irrelevance {fmt(cp['distance_irrelevance'])} (near 1 for a "
                  f"Clock, small for a Pizza), gradient symmetricity {fmt(cp['gradient_symmetricity'])} (near 1 "
                  f"for a Pizza). {cp['measures']}."]
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
        row("accuracy on all tuples", lambda m: pct(m["fourier"]["accuracy_all_pairs"])),
        *[row(f"{name.replace('_', '-')} key count (own)", lambda m, f=field: len(m["fourier"][f]))
          for name, field in SET_FIELDS.items()],
        *[row(f"energy at S: {label}", lambda m, n=n: pct(at_s(m, "energy_share_by_set")[n]))
          for n, label in components(t["fourier"]["seq_len"]).items()],
        *[row(f"{name.replace('_', ' ')} fit FVU at S", fit(name)) for name in at_s(t, "fits") or ()
          if name == "h1_preactivation" or name.endswith("_input")],
        row("logit fit FVU at S", fit("logits")),
        row("restricted loss at S (all tuples)", lambda m: f"{at_s(m, 'key_sets')['restricted_loss']:.3g}"),
        row("excluded loss at S (train tuples)", lambda m: f"{at_s(m, 'key_sets')['excluded_loss']:.3g}"),
        row(f"top {2 * len(t['fourier']['key_frequencies'])} singular energy of E @ W_ih.T (2 per spectral key frequency)", lambda m: pct_or_none(m["svd"]["E @ W_ih.T"].get("energy_share_key_rank"))),
        row("rank of E @ W_ih.T at 90% energy", lambda m: m["svd"]["E @ W_ih.T"]["rank_90"]),
    ]
    return _table(["measure", "trained", "untrained control"], rows)


def in_short(f: FourierRecord, svd_report, rows: list[Claim], progress_report=None) -> dict[str, str]:
    """One conclusion sentence per section of report.md, by section."""
    tally = claims_tally(c.status for c in rows)
    fits, sets, last = f["fits"]["in_use"], f["key_sets"], f["partial_sums"]["steps"][-1]
    sent = f["partial_sums"]["carried"][-1] if f["partial_sums"]["carried"] else None
    ranks = [e["rank_90"] for e in svd_report.values()]
    out = {"claims": f"{tally.get('reproduced', 0)} of {len(rows)} claims reproduced, {tally.get('partly', 0)} "
                     f"partly, {tally.get('not', 0)} not, on this one sample; the why column says what decided each.",
           "sets": f"the model uses {sets['in_use']['size']} frequencies (in use), {sets['functional']['size']} "
                   f"suffice on their own (functional) and {sets['spectral']['size']} hold its weights' energy "
                   f"(spectral), of {f['p'] // 2}.",
           "fourier": "no frequency is in use, so nothing is fitted." if not fits else
                      f"at the in-use set Fourier multiplication leaves {pct(fits['logits']['fvu'])} of the logits' "
                      f"variance unexplained, and the worst-fitted object is {max(fits, key=lambda o: fits[o]['fvu'])} "
                      f"({pct(max(e['fvu'] for e in fits.values()))}).",
           "clock_pizza": f"at the in-use set the logits read {f['clock_pizza']['sets']['in_use']['label']}: the "
                          f"Clock form explains {pct_or_none(f['clock_pizza']['sets']['in_use']['kappa'])} of their "
                          f"variance there, and letting amplitude and phase depend on the tokens' differences adds "
                          f"{pct_or_none(f['clock_pizza']['sets']['in_use']['pizza_excess'])}.",
           "running": f"at the last step the running sum's terms explain "
                      f"{pct_or_none(last['fraction_explained'])} of h_{last['t']}, the separate tokens' terms "
                      f"{pct_or_none(last['fraction_explained_by_tokens'])}" + (
                          f"; of what the recurrence passes on from step {sent['t']} ({sent['object']}), the "
                          f"running sum's terms explain {pct_or_none(sent['by_sum'])}, the tokens' "
                          f"{pct_or_none(sent['by_tokens'])}." if sent else "."),
           "rank": f"at 90% of the energy the matrices need rank {min(ranks)} to {max(ranks)}."}
    if progress_report:
        out["progress"] = "phases: " + ", ".join(
            f"{ph['name']} to step {ph['end']}{' (open)' if ph['open'] else ''}" for ph in progress_report["phases"]) + "."
    return {name: f"*In short:* {text[0].upper()}{text[1:]}" for name, text in out.items()}


def one_sample(config, kernels=None):
    """The line that says a single run's counts and verdicts are one sample."""
    return (f"These counts and verdicts are **one sample**: seed {config.get('seed')}, BLAS kernels "
            f"{kernels or 'not recorded'} (config.json). A run's numbers change with the seed and with the kernels a CPU "
            f"picks; the claims over seeds, from `make sweep` (runs/sweep/sweep_report.md), are the robust answer.")


def markdown(run, analyses, summary=None, figures=(), config=None, kernels=None):
    """The text of report.md from tinymod.reports.pipeline.run_report's analyses (figures are linked
    by file name, beside it)."""
    f, svd_report = analyses["fourier"], analyses["svd"]["matrices"]
    control, progress_report = analyses.get("control"), analyses.get("progress")
    lines = [f"# tinymod report: {run}", "", f"The model at step {f['model_step']}.", ""]
    rows = analyses["claims"]
    short = in_short(f, svd_report, rows, progress_report)
    if summary:
        grok = (f"test accuracy first reached 99% at step {summary['grok_step']} "
                f"({summary['grok_seconds']:.1f} s)" if summary["grok_step"] is not None
                else "test accuracy never reached 99%")
        lines += ["## Training", "",
                  f"Step {summary['step']}: train accuracy {pct(summary['train_acc'])}, "
                  f"test accuracy {pct(summary['test_acc'])}; {grok}.", ""]
    if progress_report:
        lines += ["## Through training", "",
                  f"`tinymod progress` measured {len(progress_report['rows'])} snapshots at the final "
                  f"model's in-use key frequencies ({freqs_text(progress_report['key_frequencies'])}).", ""]
        lines += _table(["phase", "from step", "to step", "rule"],
                        [[ph["name"], ph["start"], f"{ph['end']}{' (open)' if ph['open'] else ''}",
                          progress_report["phase_rules"][ph["name"]]] for ph in progress_report["phases"]])
        lines += ["", short["progress"], "", f"![progress]({runs.PROGRESS_PNG})", ""]
    lines += ["## The paper's claims, and ours", "", one_sample(config or {}, kernels), ""]
    if not f["key_frequencies"]:
        lines += [NO_KEY, ""]
    lines += _table(["claim", "paper", "ours", "verdict", "criterion", "why"],
                    [[c.claim, c.paper, c.ours, c.verdict, c.criterion, c.why] for c in rows]) + ["", short["claims"]]
    lines += ["", "## Which frequencies the model uses", "", short["sets"], "", *key_set_tables(f), ""]
    lines += ["## Fourier structure", "", *fourier_tables(f), "", short["fourier"], ""]
    lines += ["## Clock or Pizza", "", *clock_pizza_tables(f["clock_pizza"]), "", short["clock_pizza"], ""]
    lines += ["## The running sum through the sequence", "", *running_sum_tables(f["partial_sums"]), "",
              short["running"], ""]
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
                      pct_or_none(e.get("energy_share_key_rank"))] for name, e in svd_report.items()])
    lines += ["", short["rank"], "", "## Figures", ""]
    lines += [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"
