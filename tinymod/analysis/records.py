"""Contract 5's records, typed: what each analysis returns and its JSON file holds, field by
field (docs/contracts.md lists them). They are TypedDicts, so a record is the dict that is
written as JSON, unchanged, and a type checker holds every producer and every reader to the
field names here: `make test` runs mypy on tinymod/, and a misspelt field in an annotated
function fails it. The pipeline (tinymod.reports.pipeline) is the one place they are
serialised; a number that does not exist is NaN in memory and `null` in the file.
"""
from typing import TypedDict


class KeySet(TypedDict, total=False):
    """fourier.json's `key_sets[name]`: one named frequency set and Nanda's losses at it."""
    frequencies: list[int]
    size: int
    rule: str
    logit_energy_share: float
    restricted_loss: float
    restricted_test_loss: float
    excluded_loss: float
    level: float           # the functional set's
    factor: float          # the in-use set's


class Fit(TypedDict):
    """One named object's fit at a set (`fits[set][object]`)."""
    fvu: float
    fvu_median_unit: float
    relative_l2: float
    units: int
    units_constant: int


class ClockPizzaSet(TypedDict):
    """`clock_pizza.sets[name]`: the share-weighted measures at a set and its label."""
    frequencies: list[int]
    variance_share: float
    kappa: float
    phi: float
    pizza_excess: float
    chance: float
    net_excess: float
    worst_big_excess: float
    label: str             # Clock, Pizza, mixed or neither


class ClockPizza(TypedDict):
    """fourier.json's `clock_pizza`."""
    terms: list[str]
    label_rule: str
    measures: str
    frequencies: list[dict]
    sets: dict[str, ClockPizzaSet]
    distance_irrelevance: float
    gradient_symmetricity: float


class FourierRecord(TypedDict, total=False):
    """fourier.json: the Fourier picture (tabulate), the key sets and curve (keysets), the
    fits, the Clock-or-Pizza measures and the running sum, stamped with `model_step`."""
    model_step: int
    p: int
    seq_len: int
    key_frequencies: list[int]                  # the spectral set
    key_rule: str
    threshold: float
    spectral_count_by_threshold: dict[str, int]
    weight_share: list[float]
    weight_strength_order: list[int]
    weight_strength_rule: str
    accuracy_all_pairs: float
    spectra: dict[str, list[float]]
    hidden_spectrum_2d: list | None
    energy_share: dict[str, float]
    neurons: dict | None
    clock: dict[str, list]
    strength_rule: str
    logit_energy: list[float]
    strength_order: list[int]                   # by logit energy
    model_loss: float
    model_accuracy: float
    functional_key_frequencies: list[int]
    in_use_key_frequencies: list[int]
    functional_counts_by_level: dict[str, int]
    in_use_counts_by_factor: dict[str, int]
    key_sets: dict[str, KeySet]
    key_curve_rule: str
    key_curve: list[dict]
    energy_share_by_set: dict[str, dict[str, float]]
    fits: dict
    clock_pizza: ClockPizza
    partial_sums: dict


class ClaimRecord(TypedDict):
    """claims.json's `claims[i]` (tinymod.reports.claims.Claim.record)."""
    id: str
    claim: str
    paper: str
    ours: str
    status: str            # reproduced, partly or not
    verdict: str
    criterion: str
    why: str
    values: dict
    threshold: dict
    label: str | None
