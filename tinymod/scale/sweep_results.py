"""A sweep's results: sweep.json, sweep.csv (flat, for pandas) and sweep_report.md, with every
measure and verdict over the seeds of each group of runs, the grok steps and a phase
diagram."""
import csv
import io
import json
import math
import statistics

from tinymod.reports.claims import STATUSES
from tinymod.training import runs


def _flat(entry):
    nested = {"in_use_fits": "in_use_fit_", "svd_energy": "svd_energy_", "svd_rank_90": "svd_rank_90_"}
    row = {k: v for k, v in entry.items() if k not in ("settings", "claims", *nested)}
    for field, prefix in nested.items():
        row.update({f"{prefix}{k}": v for k, v in (entry.get(field) or {}).items()})
    row.update({f"setting_{k}": v for k, v in (entry.get("settings") or {}).items()})
    row.update({f"status_{c['id']}": c["status"] for c in entry.get("claims") or ()})
    return {k: (" ".join(map(str, v)) if isinstance(v, list) else v) for k, v in row.items()}


def write_results(out, entries, axes=None, seconds=None):
    runs.write_json(out / runs.SWEEP_JSON, {"seconds": seconds, "runs": entries})
    rows = [_flat(e) for e in entries]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns)
    writer.writeheader()
    writer.writerows(rows)
    runs.write_text(out / runs.SWEEP_CSV, buffer.getvalue())
    figures = _figures(out, entries, axes)
    runs.write_text(out / runs.SWEEP_REPORT_MD, markdown(entries, figures, seconds))


def _grouper(entries):
    """Runs that differ only in their seed form a group, named by its preset and every other
    setting that varies across the sweep (the filter's included)."""
    settings = [e.get("settings") or {} for e in entries]
    keys = dict.fromkeys(k for s in settings for k in s if k not in ("seed", "threads", "preset"))
    varying = [k for k in keys if len({json.dumps(s.get(k), sort_keys=True) for s in settings}) > 1]

    def group(entry):
        s = entry.get("settings") or {}
        return ", ".join(f"{k}={s.get(k)}" for k in ["preset", *varying] if k in s)
    return group


def _stats(values):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    if all(isinstance(v, int) for v in values) and max(values) >= 100:      # steps
        return f"{statistics.mean(values):,.0f} ± {sd:,.0f} ({min(values):,}–{max(values):,})"
    return f"{statistics.mean(values):.3g} ± {sd:.2g} ({min(values):.3g}–{max(values):.3g})"


def _tally(values):
    out = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def claims_table(entries):
    """Markdown: per group of seeds, each measure and each claim across its runs."""
    groups, group = {}, _grouper(entries)
    for e in entries:
        groups.setdefault(group(e), []).append(e)
    lines = []
    for group, members in groups.items():
        ok = [e for e in members if e["status"] == "ok"]
        grokked = [e["grok_step"] for e in ok if e.get("grok_step") is not None]
        lines += [f"### {group or 'all runs'}: {len(ok)} of {len(members)} runs finished, "
                  f"{len(grokked)} grokked", "",
                  "| measure | mean ± sd (range) over runs |", "| --- | --- |",
                  f"| grok step (test accuracy ≥ 99%) | {_stats(grokked)} |",
                  f"| seconds to grok | {_stats([e['grok_seconds'] for e in ok if e.get('grok_seconds') is not None])} |",
                  *[f"| {label} key frequencies (count) | {_stats([len(e[field]) for e in ok if field in e])} |"
                    for label, field in (("in-use", "in_use_key_frequencies"), ("functional", "functional_key_frequencies"),
                                         ("spectral", "key_frequencies"))],
                  f"| logit energy at the in-use set | {_stats([e.get('in_use_logit_energy_share') for e in ok])} |",
                  f"| restricted loss at the in-use set (all tuples) | {_stats([e.get('restricted_loss') for e in ok])} |",
                  f"| excluded loss at the in-use set (train tuples) | {_stats([e.get('excluded_loss') for e in ok])} |",
                  *[f"| {name} at the in-use set | {_stats([(e.get('in_use_fits') or {}).get(name) for e in ok])} |"
                    for name in dict.fromkeys(n for e in ok for n in (e.get("in_use_fits") or {}))],
                  *[f"| {label.format(name=name)} | {_stats([(e.get(field) or {}).get(name) for e in ok])} |"
                    for field, label in (("svd_energy", "top 2K singular energy of {name} (K spectral)"),
                                         ("svd_rank_90", "rank of {name} at 90% energy"))
                    for name in dict.fromkeys(n for e in ok for n in (e.get(field) or {}))],
                  f"| well-explained units, Nanda's single-frequency measure | "
                  f"{_stats([e.get('share_well_explained_nanda') for e in ok])} |",
                  *[f"| {label} | {_stats([(e.get('clock_pizza') or {}).get(name) for e in ok])} |"
                    for name, label in (("kappa", "Clock form's share of the in-use logit variance (kappa)"),
                                        ("pizza_excess", "pizza excess at the in-use set"),
                                        ("chance", "its chance level"),
                                        ("distance_irrelevance", "distance irrelevance (Zhong et al.)"),
                                        ("gradient_symmetricity", "gradient symmetricity (Zhong et al.)"))],
                  "| Clock or Pizza at the in-use set (label) | " + "; ".join(
                      f"{label} ({n} of {len(ok)})" for label, n in _tally(
                          (e.get("clock_pizza") or {}).get("label", "not measured") for e in ok).items()) + " |", ""]
        records = [{c["id"]: c for c in e.get("claims") or ()} for e in ok]
        ids = list(dict.fromkeys(i for r in records for i in r))
        if ids:
            lines += ["| claim (status over runs) | " + " | ".join(STATUSES) + " | not measured |",
                      "| --- |" + " --- |" * (len(STATUSES) + 1)]
            for i in ids:
                statuses = [r[i]["status"] if i in r else None for r in records]
                name = next(r[i]["claim"] for r in records if i in r)
                lines.append(f"| {name} | " + " | ".join(f"{statuses.count(s)} of {len(ok)}" for s in STATUSES)
                             + f" | {statuses.count(None)} of {len(ok)} |")
            lines.append("")
    return lines


def markdown(entries, figures, seconds=None):
    failed = [e for e in entries if e["status"] != "ok"]
    lines = ["# tinymod sweep", "",
             f"{len(entries)} runs, {len(failed)} failed" + (f", {seconds:.0f} s" if seconds else "") + ".", "",
             "## The paper's claims over seeds", "", *claims_table(entries)]
    if failed:
        lines += ["## Failed runs", "", "| run | error |", "| --- | --- |",
                  *[f"| {e['name']} | {e.get('error', '')} |" for e in failed], ""]
    lines += [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


def _figures(out, entries, axes):
    from tinymod.reports import plots
    made = []
    ok = [e for e in entries if e["status"] == "ok"]
    if ok:
        groups, group = {}, _grouper(entries)
        for e in ok:
            groups.setdefault(group(e), []).append(e.get("grok_step"))
        plots.grok_steps(groups, out / runs.GROK_STEPS_PNG)
        made.append(runs.GROK_STEPS_PNG)
    if axes and len(axes) == 2 and ok:
        cells = {}
        for e in ok:
            key = tuple(e["settings"].get(a) for a in axes)
            cells.setdefault(key, []).append(e.get("grok_step"))
        plots.phase_diagram(cells, axes, out / runs.PHASE_DIAGRAM_PNG)
        made.append(runs.PHASE_DIAGRAM_PNG)
    return made
