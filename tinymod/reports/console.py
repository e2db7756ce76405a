"""What the analysis commands print: each command's summary of what it measured and wrote,
rendered from the analyses tinymod.reports.pipeline returns; nothing here computes a measure."""
from tinymod.analysis.keysets import SET_FIELDS
from tinymod.analysis.tabulate import components
from tinymod.reports.claims import NO_KEY, freqs_text
from tinymod.training import runs


def fourier_text(r, folder):
    """What `tinymod fourier` prints."""
    sets = r["key_sets"]
    named = lambda n: f"{sets[n]['size']}: {freqs_text(sets[n]['frequencies'])}"
    counts = lambda d: ", ".join(f"{v} at {k}" for k, v in d.items())
    lines = [f"p = {r['p']}, model loss {r['model_loss']:.3g} over all tuples, accuracy {100 * r['accuracy_all_pairs']:.2f}%",
             f"in use     {named('in_use')}  (removal alone multiplies the loss by >= "
             f"{sets['in_use']['factor']:g}; {counts(r['in_use_counts_by_factor'])})",
             f"functional {named('functional')}  (enough on their own at level {sets['functional']['level']}; "
             f"{counts(r['functional_counts_by_level'])})",
             f"spectral   {named('spectral')}  (threshold {r['threshold']:g}; {counts(r['spectral_count_by_threshold'])})",
             "", f"{'set':<12}{'logit energy':>13}{'restricted loss':>17}{'excluded loss (train)':>23}"]
    for name in SET_FIELDS:
        e = sets[name]
        lines.append(f"{name.replace('_', ' '):<12}{100 * e['logit_energy_share']:>12.1f}%"
                     f"{e['restricted_loss']:>17.3g}{e['excluded_loss']:>23.3g}")
    lines += ["", f"{'energy at each set':<32}" + "".join(f"{n.replace('_', ' '):>12}" for n in SET_FIELDS)]
    lines += [f"{label:<32}" + "".join(f"{100 * r['energy_share_by_set'][s][name]:>11.1f}%" for s in SET_FIELDS)
              for name, label in components(r["seq_len"]).items()]
    if r["fits"]["in_use"]:
        lines += ["", f"{'fit at the in-use set':<24}{'FVU':>10}{'median unit':>13}{'relative L2':>13}"]
        lines += [f"{name:<24}{e['fvu']:>10.3g}{e['fvu_median_unit']:>13.3g}{e['relative_l2']:>13.3g}"
                  for name, e in r["fits"]["in_use"].items()]
    lines += ["key curve, strongest first by logit energy: " +
              ", ".join(f"{c['frequency']} (x{c['removal_loss_ratio']:.3g})" for c in r["key_curve"]) +
              "  (x: loss ratio with that frequency alone removed)",
              "clock or pizza at each set: " + ", ".join(
                  f"{name.replace('_', ' ')} {s['label']} (kappa {s['kappa']:.3f}, pizza excess {s['pizza_excess']:.2g})"
                  for name, s in r["clock_pizza"]["sets"].items()),
              "running sum s_t: h_t explained by cos/sin(w_k s_t) / by the tokens' terms: " +
              ", ".join(f"t = {s['t']}: {100 * (s['fraction_explained'] or 0):.1f}% / "
                        f"{100 * (s['fraction_explained_by_tokens'] or 0):.1f}%" for s in r["partial_sums"]["steps"]),
              f"wrote {folder / runs.FOURIER_JSON} and its figures"]
    return "\n".join(lines)


def svd_text(svd, folder):
    """What `tinymod svd` prints."""
    lines = [f"{'matrix':<14}{'shape':>11}{'rank 90%':>10}{'rank 99%':>10}{'energy in top 2K':>18}"]
    for name, e in svd["matrices"].items():
        share = e.get("energy_share_key_rank")
        lines.append(f"{name:<14}{e['shape'][0]:>5} x {e['shape'][1]:<3}{e['rank_90']:>10}{e['rank_99']:>10}"
                     f"{'' if share is None else f'{100 * share:.1f}%':>18}")
    return "\n".join(lines + [f"wrote {folder / runs.SVD_JSON} and {runs.SINGULAR_VALUES_PNG}"])


def ablation_text(r, folder):
    """What `tinymod ablate` prints."""
    path = lambda points: ", ".join(f"{len(c['removed'])}: {100 * c['accuracy']:.1f}%" for c in points)
    lines = [f"baseline accuracy {100 * r['baseline']['accuracy']:.2f}% (site: {r['site']})"]
    key_single = [s for s in r["single"] if s["is_key"]]
    if key_single:
        worst = min(key_single, key=lambda s: s["accuracy"])
        lines.append(f"one key frequency removed: worst is k = {worst['frequency']}, {100 * worst['accuracy']:.2f}%")
    return "\n".join(lines + [f"key frequencies removed one after another: {path(r['cumulative'])}",
                              f"control, as many non-key frequencies:      "
                              f"{path(r['control_non_key']) or 'none left (every frequency is key)'}",
                              f"wrote {folder / runs.ABLATION_JSON} and 2 figures"])


def claims_text(f, rows):
    """What `tinymod report` prints: every claim (tinymod.reports.claims records) with its
    numbers, criterion and why."""
    lines = [NO_KEY.replace("**", "")] if not f["key_frequencies"] else []
    lines += [f"{c.claim}: {c.verdict}\n    ours: {c.ours}\n    paper: {c.paper}\n"
              f"    criterion: {c.criterion}\n    why: {c.why}" for c in rows]
    return "\n".join(lines)


def progress_text(r, target):
    """What `tinymod progress` prints."""
    last = r["rows"][-1]
    return "\n".join([f"measured {len(r['rows'])} snapshots at the in-use key frequencies {freqs_text(r['key_frequencies'])}",
                      *[f"{ph['name']:<18} steps {ph['start']:>6} to {ph['end']:>6}{' (open)' if ph['open'] else ''}"
                        for ph in r["phases"]],
                      f"at step {last['step']}: restricted loss {last['restricted_loss']:.3g}, excluded loss "
                      f"{last['excluded_loss']:.3g}, test loss {last['test_loss']:.3g}",
                      f"wrote {target / runs.PROGRESS_JSON} and {runs.PROGRESS_PNG}"])
