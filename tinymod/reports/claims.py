"""The paper's claims (Rangamani, ICASSP 2025), each judged by a one-sided rule on a model's
analyses, with the numbers, the criterion and why it passes or fails. One small function
per claim; `claims` lists them all. Sparsity, the count, the fit and the mechanism are judged
at the in-use set; low rank and ablation at the spectral set.

A verdict is data: a `Claim` record holds its `status` (one of STATUSES), the measured
`values` and the `threshold` that decided it, and the why. report.md, the console and the
sweep render and tally the status; the verdict text beside it (`verdict`) only qualifies it
("reproduced as FVU, not as relative L2" is `partly`). `tinymod report` writes the records
to claims.json."""
import math
from dataclasses import asdict, dataclass, field
from typing import cast

from tinymod.analysis.keysets import LEVEL
from tinymod.analysis.records import ClaimRecord, FourierRecord

PAPER: dict = {
    "key_frequencies": 6,
    "energy": (0.854, 0.955),
    "fit_error": (1e-3, 1e-2),
}
FEW = 10          # "a few": the in-use set has at most min(FEW, floor(p/2) / 2) frequencies
SPARSE_SHARE = 0.9   # ... and holds at least this share of the logit energy
COUNT_FACTOR = 2  # the count matches the paper's 6 within this factor
ALIGNED = 0.8     # top 2K singular vectors: at least this share on a key frequency
ROBUST = 0.95     # one key frequency removed: accuracy stays at least this times the model's own
COLLAPSE = 0.10   # every key frequency removed: accuracy falls below this
CIRCUIT = 2.0     # restricted loss at most this times the model's (or ln(1/LEVEL))
# ... and the logits read Clock (clock_pizza.LABEL_RULE), not Pizza, mixed or neither


def pct(x):
    return f"{100 * x:.1f}%"


def pct_or_none(x):
    return "none (no key frequency)" if x is None or x != x else pct(x)


def freqs_text(key):
    return " ".join(map(str, key)) or "none"


def _counts(counts, unit):
    return "/".join(map(str, counts.values())) + f" at {unit} " + "/".join(counts)


STATUSES = ("reproduced", "partly", "not")


@dataclass(frozen=True)
class Claim:
    """One claim's verdict. `id` names it in claims.json and the sweep; `verdict` is the
    text report.md prints (the status, qualified); `label` is the Clock-or-Pizza label for
    the mechanism claim (a measured value beside the status), None for the others."""
    id: str
    claim: str
    paper: str
    ours: str
    status: str
    verdict: str
    criterion: str
    why: str
    values: dict = field(default_factory=dict)
    threshold: dict = field(default_factory=dict)
    label: str | None = None

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"claim {self.id}: status {self.status!r} is not one of {STATUSES}")

    def record(self) -> ClaimRecord:
        """The claims.json record: every field, the numbers as JSON numbers."""
        return cast(ClaimRecord, asdict(self))


NO_KEY = ("**No frequency qualifies as key:** no frequency holds any share of the non-constant "
          "energy of E, E @ W_ih.T and W_out (all-zero or constant weights, for example), so the "
          "model carries no Fourier structure and none of the paper's claims can hold for it.")
NONE_IN_USE = "removing no single frequency doubles the loss: the model uses none"


def sparsity_claim(f: FourierRecord) -> Claim:
    used, K = f["key_sets"]["in_use"], f["p"] // 2
    n, share, most = used["size"], used["logit_energy_share"], max(1, min(FEW, K // 2))
    ok = 1 <= n <= most and share >= SPARSE_SHARE
    why = (NONE_IN_USE if n == 0 else
           f"{n} of {K} frequencies is more than {most}" if n > most else
           f"the {n} in use hold only {pct(share)} of the logit energy" if share < SPARSE_SHARE else
           f"{n} of {K} frequencies hold {pct(share)} of the logit energy; removing any other one "
           f"alone changes the loss by less than {used['factor']:g}x")
    status = "reproduced" if ok else "not"
    return Claim("sparse", "a few frequencies carry the computation (sparse Fourier structure)", f"a few of {K}",
                 f"{n} in use: {freqs_text(used['frequencies'])} ({pct(share)} of the logit energy)",
                 status, status, f"the in-use set has 1 to {most} of {K} frequencies "
                 f"and holds at least {pct(SPARSE_SHARE)} of the logit energy", why,
                 {"in_use": n, "logit_energy_share": share}, {"in_use_max": most, "logit_energy_share_min": SPARSE_SHARE})


def count_claim(f: FourierRecord) -> Claim:
    n, paper = len(f["in_use_key_frequencies"]), PAPER["key_frequencies"]
    lo, hi = paper // COUNT_FACTOR, paper * COUNT_FACTOR
    by_factor = f["in_use_counts_by_factor"]
    edge = ("the same at every factor, in a gap" if len(set(by_factor.values())) == 1 else
            f"it moves from {max(by_factor.values())} to {min(by_factor.values())} between factors "
            f"{min(by_factor, key=float)} and {max(by_factor, key=float)}")
    why = (NONE_IN_USE if n == 0 else
           f"{n} is {'within' if lo <= n <= hi else 'outside'} a factor {COUNT_FACTOR} of {paper}; {edge}")
    status = "reproduced" if lo <= n <= hi else "not"
    return Claim("count", "about six key frequencies", f"{paper}",
                 f"in use {n} ({_counts(by_factor, 'factors')}); functional "
                 f"{len(f['functional_key_frequencies'])} ({_counts(f['functional_counts_by_level'], 'levels')}); "
                 f"spectral {len(f['key_frequencies'])} (threshold {f['threshold']:g})",
                 status, status, f"the in-use count is within a factor {COUNT_FACTOR} of {paper} ({lo} to {hi})", why,
                 {"in_use": n, "functional": len(f["functional_key_frequencies"]), "spectral": len(f["key_frequencies"])},
                 {"in_use_min": lo, "in_use_max": hi})


def fit_claim(f: FourierRecord) -> Claim:
    fits, top = f["fits"]["in_use"], PAPER["fit_error"][1]
    crit = (f"every pre-activation fit at the in-use set (h_t^pre, or a gated cell's input projection "
            f"per gate, on cos/sin of its frequencies) has "
            f"error at most {top:g}, read as FVU and as relative L2 (the paper does not say which)")
    claim = "hidden pre-activations are cos/sin of the key frequencies"
    paper = f"relative error {PAPER['fit_error'][0]:g} to {top:g}"
    if fits is None:
        return Claim("fit", claim, paper, "no fit (no frequency in use)", "not", "not", crit, NONE_IN_USE,
                     {}, {"fvu_max": top, "relative_l2_max": top})
    pre = {name: e for name, e in fits.items() if name.endswith(("preactivation", "_input"))}
    worst_fvu, worst_l2 = max(e["fvu"] for e in pre.values()), max(e["relative_l2"] for e in pre.values())
    as_fvu, as_l2 = worst_fvu <= top, worst_l2 <= top
    status, verdict = (("reproduced", "reproduced under both readings") if as_fvu and as_l2 else
                       ("partly", "reproduced as FVU, not as relative L2") if as_fvu else
                       ("not", "not under either reading"))
    ours = "; ".join(f"{name}: FVU {e['fvu']:.2g}, relative L2 {e['relative_l2']:.2g}" for name, e in pre.items())
    why = (f"as FVU: worst {worst_fvu:.2g} {'≤' if as_fvu else '>'} {top:g}; "
           f"as relative L2: worst {worst_l2:.2g} {'≤' if as_l2 else '>'} {top:g}")
    return Claim("fit", claim, paper, ours, status, verdict, crit, why,
                 {"worst_fvu": worst_fvu, "worst_relative_l2": worst_l2,
                  **{f"{name}_fvu": e["fvu"] for name, e in pre.items()},
                  **{f"{name}_relative_l2": e["relative_l2"] for name, e in pre.items()}},
                 {"fvu_max": top, "relative_l2_max": top})


def circuit_claim(f: FourierRecord) -> Claim:
    used, p = f["key_sets"]["in_use"], f["p"]
    bound = max(CIRCUIT * f["model_loss"], math.log(1 / LEVEL))
    floor = math.log(p) / 2
    crit = (f"at the in-use set the restricted loss (all tuples) is at most max({CIRCUIT:g} × the model's "
            f"loss, ln(1/{LEVEL})), the excluded loss (train tuples) at least ln(p)/2 = {floor:.2f}, and the "
            f"logits read Clock, not Pizza: {f['clock_pizza']['label_rule']}")
    claim = "the logits are Fourier multiplication (Clock), not Pizza, at the frequencies in use"
    limits = {"restricted_loss_max": bound, "excluded_loss_min": floor, "label": "Clock"}
    if not used["size"]:
        return Claim("mechanism", claim, "the mechanism", "no frequency in use; label neither", "not", "not", crit,
                     NONE_IN_USE, {}, limits, "neither")
    r, e = used["restricted_loss"], used["excluded_loss"]
    cp = f["clock_pizza"]["sets"]["in_use"]
    nanda = r <= bound and e >= floor
    ok = nanda and cp["label"] == "Clock"
    why = (f"keeping only their terms the loss is {r:.3g} (model {f['model_loss']:.3g}, bound {bound:.3g}); "
           f"taking them out leaves {e:.3g} on the train tuples (ln p = {math.log(p):.2f}); the label is "
           f"{cp['label']}: the Clock form explains {pct(cp['kappa'])} of the in-use frequencies' logit "
           f"variance, the pizza excess above chance is {cp['net_excess']:.2g}, the set holds "
           f"{pct(cp['variance_share'])} of the logit variance")
    status = "reproduced" if ok else "not"
    return Claim("mechanism", claim, "the mechanism", f"label {cp['label']} (kappa {cp['kappa']:.3f}, pizza excess "
                 f"{cp['pizza_excess']:.2g}, chance {cp['chance']:.2g}); restricted loss {r:.3g}, excluded "
                 f"loss {e:.3g}; distance irrelevance {f['clock_pizza']['distance_irrelevance']:.3f}, "
                 f"gradient symmetricity {f['clock_pizza']['gradient_symmetricity']:.3f}",
                 status, status, crit, why,
                 {"restricted_loss": r, "excluded_loss": e, "model_loss": f["model_loss"], "kappa": cp["kappa"],
                  "pizza_excess": cp["pizza_excess"], "net_excess": cp["net_excess"], "chance": cp["chance"],
                  "variance_share": cp["variance_share"],
                  "distance_irrelevance": f["clock_pizza"]["distance_irrelevance"],
                  "gradient_symmetricity": f["clock_pizza"]["gradient_symmetricity"]}, limits, cp["label"])


def energy_claims(f: FourierRecord, svd_report) -> list[Claim]:
    rows, spectral = [], f["key_frequencies"]
    shares = {name: e["energy_share_key_rank"] for name, e in svd_report.items()
              if "energy_share_key_rank" in e}
    if shares:
        lo, hi = min(shares, key=lambda n: shares[n]), max(shares, key=lambda n: shares[n])
        below = [n for n, v in shares.items() if v < PAPER["energy"][0]]
        r, rank = 2 * len(spectral), max(min(svd_report[n]["shape"]) for n in shares)
        low = r <= rank / 2
        why = (f"{r} singular values are more than half of the largest rank, {rank}: nothing low about that"
               if not low else "every matrix clears the bar" if not below else
               "below the bar: " + ", ".join(f"{n} {pct(shares[n])}" for n in below))
        status = "not" if not low or len(below) == len(shares) else "partly" if below else "reproduced"
        rows.append(Claim(
            "low_rank", "significant singular components (2 per key frequency) hold most energy",
            f"{pct(PAPER['energy'][0])} to {pct(PAPER['energy'][1])}",
            f"{pct(shares[lo])} ({lo}) to {pct(shares[hi])} ({hi})",
            status, f"partly: {len(shares) - len(below)} of {len(shares)} matrices" if status == "partly" else status,
            f"the top {r} singular values (2 per spectral key frequency), at most half of the largest "
            f"matrix's rank, hold at least {pct(PAPER['energy'][0])} of every matrix's energy", why,
            {"energy_share_key_rank": shares, "components": r, "largest_rank": rank},
            {"energy_share_min": PAPER["energy"][0], "components_max": rank / 2}))
    top = svd_report.get("E @ W_ih.T", {}).get("top_vectors", [])[: 2 * len(spectral)]
    on_key, K = sum(v["is_key"] for v in top), f["p"] // 2
    few = len(spectral) <= K / 2
    ok = top and few and on_key >= ALIGNED * len(top)
    rows.append(Claim(
        "aligned", "top singular vectors are key Fourier modes", "aligned",
        f"{on_key} of the top {len(top)} vectors of E @ W_ih.T have a key frequency "
        f"(mean purity {pct(sum(v['purity'] for v in top) / max(len(top), 1))})",
        "reproduced" if ok else "not", "reproduced" if ok else f"not: {on_key} of {len(top)}",
        f"the spectral set has at most half of the {K} frequencies, and at least {pct(ALIGNED)} of the "
        f"top {2 * len(spectral)} vectors have one of them as their dominant frequency",
        "no spectral key frequency" if not top else
        f"the spectral set holds {len(spectral)} of {K} frequencies, so any vector is likely on one" if not few else
        f"{on_key} of {len(top)} = {pct(on_key / len(top))} {'≥' if on_key >= ALIGNED * len(top) else '<'} {pct(ALIGNED)}",
        {"on_key": on_key, "top_vectors": len(top), "spectral": len(spectral)},
        {"on_key_share_min": ALIGNED, "spectral_max": K / 2}))
    return rows


def ablation_claims(ablation_report):
    singles = [s for s in ablation_report["single"] if s["is_key"]]
    worst = min(singles, key=lambda s: s["accuracy"]) if singles else None
    # relative to the model's own accuracy: a model below ROBUST would fail by construction
    base = ablation_report["baseline"]["accuracy"]
    robust = ROBUST * base
    one = "reproduced" if worst and worst["accuracy"] >= robust else "not"
    rows = [Claim(
        "one_removal", "removing one key frequency barely hurts", "barely hurts",
        f"worst accuracy after one removal {pct(worst['accuracy']) if worst else 'none'} (the model {pct(base)})",
        one, one,
        f"removing any one spectral key frequency keeps at least {ROBUST:g} × the model's accuracy on all "
        f"tuples ({pct(robust)})",
        "no spectral key frequency" if not worst else
        f"the worst, k = {worst['frequency']}, leaves {pct(worst['accuracy'])} "
        f"({'≥' if worst['accuracy'] >= robust else '<'} {pct(robust)})",
        {"worst_accuracy": worst["accuracy"] if worst else None, "worst_frequency": worst["frequency"] if worst else None,
         "model_accuracy": base}, {"accuracy_min": robust})]
    cumulative, control = ablation_report["cumulative"], ablation_report["control_non_key"]
    last = cumulative[-1]["accuracy"] if cumulative else float("nan")
    kept = control[-1]["accuracy"] if control else float("nan")
    path = ", ".join(f"{len(c['removed'])}: {pct(c['accuracy'])}" for c in cumulative)
    ok = last < COLLAPSE and kept >= robust
    no_control = "none left: every frequency is a spectral key frequency"
    several = "reproduced" if ok else "not"
    rows.append(Claim(
        "several_removals", "removing several destroys accuracy", "collapse",
        f"after removing 1, 2, ...: {path}; control (as many non-key): {pct(kept) if control else no_control}",
        several, several,
        f"removing every spectral key frequency (strongest first) leaves under {pct(COLLAPSE)}; "
        f"as many non-key ones keep at least {ROBUST:g} × the model's accuracy ({pct(robust)})",
        "no spectral key frequency" if not cumulative else
        f"all {len(cumulative)} removed: {pct(last)} ({'<' if last < COLLAPSE else '≥'} {pct(COLLAPSE)}); "
        + (f"the control keeps {pct(kept)} ({'≥' if kept >= robust else '<'} {pct(robust)})" if control
         else f"no control: {no_control}"),
        {"all_removed_accuracy": last if cumulative else None, "control_accuracy": kept if control else None},
        {"all_removed_accuracy_max": COLLAPSE, "control_accuracy_min": robust}))
    return rows


def claims(fourier_report: FourierRecord, svd_report, ablation_report) -> list[Claim]:
    """One Claim per claim of the paper, each verdict with its one-sided criterion and why.
    Sparsity, the count, the fit and the mechanism use the in-use set (what the model
    uses); low rank and ablation use the spectral set (where the energy sits: removing all
    of it must leave no path)."""
    f = fourier_report
    return [sparsity_claim(f), count_claim(f), *energy_claims(f, svd_report), fit_claim(f),
            circuit_claim(f), *ablation_claims(ablation_report)]


def tally(statuses):
    """{status: count} over STATUSES, in their order (the sweep's and report.md's tally)."""
    statuses = list(statuses)
    return {s: statuses.count(s) for s in STATUSES}
