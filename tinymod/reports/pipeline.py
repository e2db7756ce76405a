"""The analysis pipeline, owner of contract 5: for one model it computes the tables and the
key sets once, stamps `model_step`, and writes every analysis JSON and figure under the
names in `runs`. The report (tinymod.reports.report) only renders what this returns.

    fourier   tabulate.picture_and_tables + keysets + fits + clock_pizza
              + partial_sums                                           -> fourier.json
    svd       rank at the spectral set                                  -> svd.json
    ablate    ablation over the spectral set, strongest first           -> ablation.json
    progress  every snapshot at the in-use set                          -> progress.json
    control   the same architecture untrained, at the trained sets      -> control.json
    claims    the paper's claims judged on the above, one record each   -> claims.json
    report    all of the above, and report.md
"""
from pathlib import Path

from tinymod.analysis import ablate, clock_pizza, fits, keysets, partial_sums, progress, svd, tabulate
from tinymod.model import rnn
from tinymod.reports import claims, plots, report
from tinymod.training import checkpoint, machine, runs
from tinymod.model.data import make_dataset
from tinymod.analysis.fourier import energy_shares_at
from tinymod.analysis.keysets import SET_FIELDS, THRESHOLD
from tinymod.analysis.records import FourierRecord


def _write(folder, name, config, record):
    """Write one analysis JSON, stamped with the step of the model it describes."""
    runs.write_json(Path(folder) / name, {"model_step": config["step"], **record})


def fourier_report(params, config, threshold=THRESHOLD, extra_sets=None) -> FourierRecord:
    """The Fourier picture of a model (tabulate.picture_and_tables), its three named key sets and
    key curve (keysets), the fits of named objects at the in-use and functional sets (fits)
    and the running-sum analysis at the in-use set, strongest first. `extra_sets` ({name:
    freqs}) are measured too (the untrained control at the trained model's set)."""
    seq_len, activation = config.get("seq_len", 2), config["activation"]
    ds = make_dataset(config["p"], seq_len, config["frac"], config["seed"])
    split = (ds.x_train, ds.x_test)
    found, tables = tabulate.picture_and_tables(params, activation, threshold, seq_len)
    found.update(keysets.find_key_sets(params, activation, seq_len, tables["logits"], found["key_frequencies"],
                                       found["key_rule"], split))
    sets = {name: found[field] for name, field in SET_FIELDS.items()}
    extra_sets = extra_sets or {}
    energy = found["logit_energy"]
    for name, freqs in extra_sets.items():
        found["key_sets"][name] = keysets.set_summary(freqs, "given", energy, tables["logits"], split)
    found["energy_share_by_set"] = {name: energy_shares_at(tables["spectra"], tables["totals"], freqs)
                                    for name, freqs in {**sets, **extra_sets}.items()}
    found["fits"] = fits.fit_named_objects(tables, activation, {"in_use": sets["in_use"],
                                                                "functional": sets["functional"], **extra_sets})
    found["clock_pizza"] = clock_pizza.measure(params, activation, seq_len, tables["logits"], {**sets, **extra_sets})
    used = [k for k in found["strength_order"] if k in sets["in_use"]]
    found["partial_sums"] = {**partial_sums.measure_running_sum(tables, used, config["p"]),
                             "key_set": "in_use, strongest first"}
    return found


def run_fourier(params, config, folder, threshold=THRESHOLD):
    """fourier.json and its figures."""
    folder = Path(folder)
    found = {"model_step": config["step"], **fourier_report(params, config, threshold)}
    runs.write_json(folder / runs.FOURIER_JSON, found)
    plots.fourier_spectra(found, folder / runs.SPECTRA_PNG, tabulate.components(found["seq_len"]))
    plots.key_curve(found, folder / runs.KEY_CURVE_PNG)
    if found["hidden_spectrum_2d"] is not None:              # two tokens
        plots.hidden_spectrum_2d(found, folder / runs.HIDDEN_2D_PNG)
        plots.neurons_per_frequency(found, folder / runs.NEURONS_PNG)
    plots.clock(found, folder / runs.CLOCK_PNG)
    if "clock" in found["partial_sums"]:
        plots.clock_through_time(found["partial_sums"], folder / runs.CLOCK_THROUGH_TIME_PNG)
    return found


def run_svd(params, config, folder, key):
    """svd.json at the spectral key frequencies `key` (2 singular values per frequency)."""
    found = {"key_frequencies": list(key), "key_set": "spectral",
             "matrices": svd.measure_matrices(params, config["activation"], key)}
    _write(folder, runs.SVD_JSON, config, found)
    plots.singular_values(found["matrices"], Path(folder) / runs.SINGULAR_VALUES_PNG)
    return found


def run_ablate(params, config, folder, key, strength, site="both", seeds=5, voice=None):
    """ablation.json over the spectral key frequencies `key`, strongest first by the weights'
    mean share `strength` (indexed by k: fourier.json's weight_share): removing every
    frequency that holds energy is what must leave no path for the answer."""
    if voice:
        voice.stage("ablate: removing frequencies", ablate.evaluations(config["p"], key, seeds))
    found = {**ablate.measure_removals(params, config, key, strength, site, seeds, voice and voice.tick),
             "key_set": "spectral", "order": "strongest first by the weights' mean share (fourier.json's "
                                             "weight_strength_order)"}
    _write(folder, runs.ABLATION_JSON, config, found)
    plots.ablation_single(found, Path(folder) / runs.ABLATION_SINGLE_PNG)
    plots.ablation_cumulative(found, Path(folder) / runs.ABLATION_CUMULATIVE_PNG)
    return found


def run_progress(folder, config, key, out=None, voice=None):
    """progress.json and progress.png for the run in `folder`, at the frequencies `key`."""
    out = Path(out or folder)
    if voice:
        voice.stage("progress: measuring every snapshot", len(runs.list_snapshots(folder)))
    found = progress.measure_snapshots(checkpoint.read_snapshots(folder, config), config, key, voice and voice.tick)
    _write(out, runs.PROGRESS_JSON, config, found)
    plots.progress(found, out / runs.PROGRESS_PNG)
    return found


def untrained_control(params, config, key, spectral, threshold=THRESHOLD):
    """The same architecture at initialisation (the run's seed and dtype), measured like the
    trained model: its own key sets, and at the trained model's in-use set `key` (as
    `trained_in_use`) for the Fourier measures and its spectral set `spectral` for the SVD."""
    p, D = params["E"].shape
    fresh = rnn.init_params(p, D, params["W_out"].shape[1], config.get("seed", 0),
                            config.get("dtype", "float32"), cell=rnn.cell_of(params))
    return {"fourier": fourier_report(fresh, config, threshold, {"trained_in_use": list(key)}),
            "svd": svd.measure_matrices(fresh, config["activation"], spectral)}


def run_report(params, config, folder, summary=None, threshold=THRESHOLD, snapshots=True, voice=None):
    """Every analysis (progress too when the run has snapshots), each computed once, and
    report.md rendered from them (`summary`: the training summary, if any; `voice`, a
    tinymod.reports.speak.Voice, says each stage as it starts). Returns (the report's path,
    {"fourier", "svd", "ablation", "control", "progress", "claims"})."""
    runs.remove_stale_temporaries(folder)        # what a killed report left, as train does
    analyses = _analyses(params, config, folder, threshold, snapshots, voice)
    figures = [name for name in runs.TRAINING_FIGURES + runs.ANALYSIS_FIGURES if (Path(folder) / name).exists()]
    text = report.markdown(folder, analyses, summary, figures, config, machine.blas_kernels(folder))
    return runs.write_text(Path(folder) / runs.REPORT_MD, text), analyses


def _analyses(params, config, folder, threshold, snapshots, voice=None):
    say = voice.stage if voice else lambda name: None
    say("fourier: the model's tables, spectra, key sets and curve, fits")
    found = run_fourier(params, config, folder, threshold)
    spectral, strength = found["key_frequencies"], found["weight_share"]     # computed once, in fourier.json
    used = found["in_use_key_frequencies"]
    say("svd: singular values of the weights and tables")
    svd_report = run_svd(params, config, folder, spectral)
    ablation = run_ablate(params, config, folder, spectral, strength, voice=voice)
    say("control: the same architecture untrained, measured alike")
    control = untrained_control(params, config, used, spectral, threshold)
    _write(folder, runs.CONTROL_JSON, config, {
        "what": "the same architecture at initialisation, measured at the trained model's in-use set",
        "key_frequencies": used, **control})
    verdicts = claims.claims(found, svd_report["matrices"], ablation)
    _write(folder, runs.CLAIMS_JSON, config, {"statuses": list(claims.STATUSES),
                                              "claims": [c.record() for c in verdicts]})
    return {"fourier": found, "svd": svd_report, "ablation": ablation, "control": control, "claims": verdicts,
            "progress": run_progress(folder, config, used, voice=voice)
            if snapshots and runs.list_snapshots(folder) else None}
