"""Compare DisCoM-KD with baselines and ablations over several random splits.

Usage (no Qt)::

    result = run_comparison(config, ["discomkd", "student", "dml"], seeds=3,
                            out_dir=Path("cmp"), on_progress=print, stop=StopToken())
    print(result.to_markdown())

Seed k (0-based) uses ``config.seed + k`` for the split and for the initialisation, for every
method, so all methods see the same train/validation/test samples on a given seed. The runs go
seed by seed (every method on seed 0, then on seed 1, ...), so a stopped comparison still holds
complete seeds. Runs cut short by a stop are left out of the table and listed in ``per_run``.

Because the splits are shared, every method is compared with the student alone seed by seed: the
rows carry the paired difference of test weighted F1 (mean, 95% t-interval, Wilcoxon p) and a
verdict (helps / no evidence / hurts, see significance.py), and the result lists the runs whose
best epoch fell in the last 20% of the epochs (not converged).

Files written by :meth:`ComparisonResult.write` (each atomically):
- ``comparison.md``: the table as Markdown (mean ± standard deviation over seeds, paired differences);
- ``comparison.csv``: one row per method and modality;
- ``per_run.json``: ``{"format_version", "settings", "skipped", "runs": [...]}``, one entry per
  method and seed with its status, time and test metrics per modality (and the teacher's).
"""

from __future__ import annotations

import csv
import io
import json
import time
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import TrainingConfig
from ..data.dataset import MultiModalDataset
from ..errors import Cancelled, ConfigError, DataError
from ..storage import runs
from ..storage.atomic import atomic_write_together
from ..storage.outputs import check_output_folder
from .baselines import PAIRED_ONLY, BaselineRun, BaselineSettings, RunProgressHandler, run_method, skip_reason
from .convergence import LATE_BEST_EPOCH, LATE_GAIN_TOLERANCE, late_gain
from .events import StopToken
from .preparation import load_dataset
from .significance import paired_difference

METHODS: dict[str, str] = {
    "discomkd": "DisCoM-KD",
    "student": "Student alone (CE)",
    "classifiers_only": "Control: DisCoM-KD trainer, L_cl only",
    "discomkd_paper": "DisCoM-KD, paper's objective",
    "kd": "Teacher + KD (Hinton)",
    "dkd": "Teacher + DKD",
    "dml": "Deep mutual learning",
    "distill": "Two-stage distillation",
    "self_training": "Self-training",
    "discomkd_no_aux": "DisCoM-KD without L_aux",
    "discomkd_no_adv": "DisCoM-KD without L_adv",
    "discomkd_no_mod": "DisCoM-KD without L_mod",
    "discomkd_no_perp": "DisCoM-KD without L_perp",
    "discomkd_no_agree": "DisCoM-KD without L_agree",
    "discomkd_no_unlabelled": "DisCoM-KD without L_unlabelled",
}
DEFAULT_METHODS = list(METHODS)
REFERENCE = "student"  # every other method is compared with the modality's classifier trained alone
DEFAULT = "discomkd"  # the method the verdict is about
# The baselines (not DisCoM-KD variants or controls): the default is also compared with the strongest
# of them given the same data (the unlabelled recordings too, when the default learnt from them).
BASELINES = ("student", "kd", "dkd", "dml", "distill", "self_training")
FORMAT_VERSION = 3  # 2: paired differences to the student alone and convergence warnings; 3: uses_unlabelled per run
COMPARISON_FILES = ("comparison.md", "comparison.csv", "per_run.json")


@dataclass
class CompareProgress:
    """Where a comparison is. ``method`` is "data" while the folders are read; ``fraction`` is overall."""

    method: str
    seed_index: int
    n_seeds: int
    fraction: float
    message: str


ProgressCallback = Callable[[CompareProgress], None]


@dataclass
class ComparisonResult:
    """Mean ± standard deviation (over seeds, ddof=1; 0 for one seed) of test metrics per method and modality.

    ``rows``: dicts with method, modality, wf1_mean, wf1_std, acc_mean, acc_std, time_s (mean wall
    seconds per seed for the whole method, all modalities), plus label and n_runs.
    ``skipped``: method -> reason. ``per_run``: one dict per method and seed.
    """

    rows: list[dict] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    per_run: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    stopped: bool = False
    wall_time_s: float = 0.0

    @property
    def measured_nothing(self) -> bool:
        """Stopped before any run ended: there is nothing to write (an empty table would only take the
        output folder, which the next comparison could then not use without --force)."""
        return self.stopped and all(run.get("status") == "stopped" for run in self.per_run)

    def to_markdown(self) -> str:
        lines = []
        n_seeds = self.settings.get("seeds")
        if n_seeds:
            lines.append(f"Test weighted F1 and accuracy, mean ± std over {n_seeds} random split(s); "
                         "time is wall seconds per seed for the whole method. Difference: the method minus the "
                         "student alone on the same seed, in F1 points, mean with 95% t-interval and Wilcoxon p.")
            lines.append("")
        lines += [f"**{line}**" for line in self.verdict_lines()]
        if self.unlabelled_line():
            lines += ["", self.unlabelled_line()]
        if lines and lines[-1]:
            lines.append("")
        lines.append("| Method | Modality | Unlabelled recordings | Weighted F1 | Accuracy | Difference to student alone "
                     "| Verdict | Runs | Best epoch | Time per seed (s) |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for r in self.rows:
            lines.append(
                f"| {r.get('label', METHODS.get(r['method'], r['method']))} | {r['modality']} "
                f"| {'yes' if r.get('unlabelled') else 'no'} "
                f"| {r['wf1_mean']:.3f} ± {r['wf1_std']:.3f} | {r['acc_mean']:.3f} ± {r['acc_std']:.3f} "
                f"| {difference_text(r)} | {r.get('verdict', '')} | {r.get('n_runs', '')} "
                f"| {r.get('best_epoch_text', '')} | {r['time_s']:.1f} |"
            )
        teachers = [p["teacher"] for p in self.per_run if p.get("teacher") and p["method"] in PAIRED_ONLY]
        if teachers:
            seen, wf1, acc = set(), [], []
            for p in self.per_run:  # one teacher per seed, shared by kd and dkd
                if p.get("teacher") and p["seed"] not in seen:
                    seen.add(p["seed"])
                    wf1.append(p["teacher"]["weighted_f1"])
                    acc.append(p["teacher"]["accuracy"])
            lines += ["", f"Multimodal teacher (sees every modality at test time, so not comparable with the rows "
                          f"above): weighted F1 {_mean(wf1):.3f} ± {_std(wf1):.3f}, accuracy "
                          f"{_mean(acc):.3f} ± {_std(acc):.3f} over {len(wf1)} seed(s)."]
        plateaus = plateau_notes(self.per_run, int(self.settings.get("config", {}).get("epochs", 0)))
        if self.warnings or plateaus:
            lines += ["", "Convergence:"]
            lines += [f"- {w}" for w in self.warnings + plateaus]
        if self.skipped:
            lines += ["", "Skipped:"]
            lines += [f"- {METHODS.get(m, m)}: {reason}" for m, reason in self.skipped.items()]
        if self.stopped:
            lines += ["", "The comparison was stopped before it finished; runs cut short are not in the table."]
        return "\n".join(lines) + "\n"

    @property
    def warnings(self) -> list[str]:
        return convergence_warnings(self.per_run, int(self.settings.get("config", {}).get("epochs", 0)))

    def verdict_lines(self, method: str = DEFAULT) -> list[str]:
        """What a user reads first: the default against the student alone, then, per modality, against
        the strongest baseline given the same data, e.g. 'DisCoM-KD vs student alone: weak: helps, +3.1
        F1 points (...)'."""
        rows = [r for r in self.rows if r["method"] == method]
        lines = []
        parts = [f"{r['modality']}: {r['verdict']}, {_verdict_detail(r)}" for r in rows if r.get("verdict")]
        if parts:
            lines.append(f"{METHODS.get(method, method)} vs student alone: " + "; ".join(parts))
        parts = [f"{r['modality']}: vs {METHODS.get(r['strongest_baseline'], r['strongest_baseline'])}, "
                 f"{r['vs_strongest_verdict']}, {_verdict_detail(r, 'vs_strongest')}"
                 for r in rows if r.get("strongest_baseline")]
        if parts:
            data = "with the unlabelled recordings" if any(r["unlabelled"] for r in rows) else "on the same data"
            lines.append(f"{METHODS.get(method, method)} vs the strongest baseline {data}: " + "; ".join(parts))
        return lines

    def unlabelled_line(self) -> str:
        """Which methods were given the unlabelled recordings ('' when the data has none)."""
        count = self.settings.get("unlabelled_pairs", 0)
        unused = self.settings.get("unlabelled_unused", "")  # recordings no modality pairs (DatasetReport)
        if not count:
            return unused
        methods = list(dict.fromkeys(r["method"] for r in self.rows))
        given = [METHODS.get(m, m) for m in methods if any(r["unlabelled"] for r in self.rows if r["method"] == m)]
        not_given = [METHODS.get(m, m) for m in methods if m not in
                     {r["method"] for r in self.rows if r["unlabelled"]}]
        return (f"{count} unlabelled recordings: given to {', '.join(given) or 'no method'}"
                + (f"; not used by {', '.join(not_given)}" if not_given else "") + "."
                + (f" {unused}" if unused else ""))

    def to_csv(self) -> str:
        out = io.StringIO()
        columns = ["method", "label", "modality", "unlabelled", "wf1_mean", "wf1_std", "acc_mean", "acc_std", "time_s",
                   "n_runs", "diff_mean", "diff_ci_low", "diff_ci_high", "diff_wilcoxon_p", "diff_seeds", "verdict",
                   "strongest_baseline", "vs_strongest_mean", "vs_strongest_ci_low", "vs_strongest_ci_high",
                   "vs_strongest_wilcoxon_p", "vs_strongest_seeds", "vs_strongest_verdict"]
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: ("yes" if v else "no") if isinstance(v, bool) else f"{v:.4f}" if isinstance(v, float)
                             else v for k, v in r.items()})
        return out.getvalue()

    def write(self, out_dir: str | Path, replace: bool = False) -> None:
        """Write COMPARISON_FILES into ``out_dir``; existing ones are replaced only when ``replace``."""
        out = Path(out_dir)
        payload = {"format_version": FORMAT_VERSION, "settings": self.settings, "skipped": self.skipped,
                   "stopped": self.stopped, "wall_time_s": self.wall_time_s, "runs": self.per_run}
        texts = {"comparison.md": self.to_markdown(), "comparison.csv": self.to_csv(),
                 "per_run.json": json.dumps(payload, indent=1)}
        # Written together: a full disk keeps the earlier set, never a new table beside old runs.
        atomic_write_together([(out / name, lambda fh, text=text: fh.write(text), True) for name, text in texts.items()],
                              replace=replace)


def check_comparison_folder(out_dir: str | Path, config: TrainingConfig, replace: bool = False) -> Path:
    """Check the folder a comparison will write, before any data is read (storage/outputs.py): a
    folder (not a file, not under one) that can be written, outside the data folders, whose
    comparison files are new unless ``replace``."""
    return check_output_folder(out_dir, [m.folder for m in config.modalities], COMPARISON_FILES, replace,
                               what="the comparison folder")


def read_comparison(out_dir: str | Path) -> ComparisonResult:
    """Load a comparison written by :meth:`ComparisonResult.write` (rows are recomputed from the runs)."""
    path = Path(out_dir) / "per_run.json"
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        settings, per_run = payload["settings"], payload["runs"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"'{path}' is not a readable comparison ({exc}).") from None
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise ConfigError(f"'{path}' was written by a newer version of DisCoM-KD Studio.")
    names = [m["name"] for m in settings.get("config", {}).get("modalities", [])]
    rows = summarise(per_run, settings.get("methods", list(METHODS)), names)
    return ComparisonResult(rows, dict(payload.get("skipped", {})), per_run, settings,
                            bool(payload.get("stopped")), float(payload.get("wall_time_s", 0.0)))


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarise(per_run: list[dict], methods: list[str], modalities: list[str]) -> list[dict]:
    """Table rows from finished runs, in the order of ``methods`` then ``modalities``.

    Every method but the reference gets the paired difference of its test weighted F1 to the
    student alone on the seeds both finished (``diff_*`` and ``verdict``, see significance.py).
    """
    finished = {m: {p["seed"]: p for p in per_run if p["method"] == m and p["status"] == "finished"}
                for m in set(methods) | {REFERENCE}}
    rows = []
    for method in methods:
        done = list(finished[method].values())
        if not done:
            continue
        time_s = _mean([p["time_s"] for p in done])
        for name in modalities:
            metrics = [p["metrics"][name] for p in done if name in p["metrics"]]
            if not metrics:
                continue
            wf1 = [m["weighted_f1"] for m in metrics]
            acc = [m["accuracy"] for m in metrics]
            best_epochs = [m["best_epoch"] for m in metrics if "best_epoch" in m]
            row = {
                "method": method, "label": METHODS.get(method, method), "modality": name,
                "wf1_mean": _mean(wf1), "wf1_std": _std(wf1), "acc_mean": _mean(acc), "acc_std": _std(acc),
                "time_s": time_s, "n_runs": len(metrics),
                "best_epoch_text": "/".join(str(e) for e in best_epochs),
                "unlabelled": any(p.get("uses_unlabelled", False) for p in done),
            }
            if method != REFERENCE:
                diff = _paired(finished, method, REFERENCE, name)
                if diff:
                    row.update(diff_mean=diff.mean, diff_ci_low=diff.ci_low, diff_ci_high=diff.ci_high,
                               diff_wilcoxon_p=diff.wilcoxon_p, diff_seeds=diff.n, verdict=diff.verdict)
            rows.append(row)
    _compare_default_with_strongest_baseline(rows, finished)
    return rows


def _paired(finished: dict[str, dict[int, dict]], method: str, reference: str, modality: str):
    """The paired difference of test weighted F1, ``method`` minus ``reference``, on the seeds both
    finished with this modality; None without such a seed."""
    seeds = [seed for seed, p in finished.get(method, {}).items()
             if modality in p["metrics"] and seed in finished.get(reference, {})
             and modality in finished[reference][seed]["metrics"]]
    if not seeds:
        return None
    return paired_difference([finished[method][k]["metrics"][modality]["weighted_f1"] for k in seeds],
                             [finished[reference][k]["metrics"][modality]["weighted_f1"] for k in seeds])


def _compare_default_with_strongest_baseline(rows: list[dict], finished: dict[str, dict[int, dict]]) -> None:
    """On the default's rows, per modality, the paired difference to the baseline with the highest mean
    test weighted F1 among those given the same data: when the default learnt from unlabelled
    recordings, only baselines that did too, otherwise only those that did not (more data is no fair yardstick)."""
    for row in rows:
        if row["method"] != DEFAULT:
            continue
        candidates = [r for r in rows if r["modality"] == row["modality"] and r["method"] in BASELINES
                      and r["method"] != REFERENCE and r["unlabelled"] == row["unlabelled"]]
        if not candidates:
            continue
        strongest = max(candidates, key=lambda r: r["wf1_mean"])
        diff = _paired(finished, DEFAULT, strongest["method"], row["modality"])
        if diff:
            row.update(strongest_baseline=strongest["method"], vs_strongest_mean=diff.mean,
                       vs_strongest_ci_low=diff.ci_low, vs_strongest_ci_high=diff.ci_high,
                       vs_strongest_wilcoxon_p=diff.wilcoxon_p, vs_strongest_seeds=diff.n,
                       vs_strongest_verdict=diff.verdict)


def difference_text(row: dict, prefix: str = "diff") -> str:
    """'+3.1 (+1.2 to +5.0; p 0.06)' in F1 points, or '' for the reference and rows without pairs.
    ``prefix`` "vs_strongest": the default's difference to the strongest baseline instead."""
    if f"{prefix}_mean" not in row:
        return ""
    mean = 100 * row[f"{prefix}_mean"]
    if row[f"{prefix}_seeds"] < 2:
        return f"{mean:+.1f} (1 seed)"
    p = f"; p {row[f'{prefix}_wilcoxon_p']:.2g}" if row.get(f"{prefix}_wilcoxon_p") is not None else ""
    return f"{mean:+.1f} ({100 * row[f'{prefix}_ci_low']:+.1f} to {100 * row[f'{prefix}_ci_high']:+.1f}{p})"


def _verdict_detail(row: dict, prefix: str = "diff") -> str:
    """'+2.9 F1 points (95% CI +2.0 to +3.8, Wilcoxon p 0.062, 5 seeds)'."""
    mean = 100 * row[f"{prefix}_mean"]
    if row[f"{prefix}_seeds"] < 2:
        return f"{mean:+.1f} F1 points (1 seed, no interval)"
    p = f", Wilcoxon p {row[f'{prefix}_wilcoxon_p']:.2g}" if row.get(f"{prefix}_wilcoxon_p") is not None else ""
    return (f"{mean:+.1f} F1 points (95% CI {100 * row[f'{prefix}_ci_low']:+.1f} to "
            f"{100 * row[f'{prefix}_ci_high']:+.1f}{p}, {row[f'{prefix}_seeds']} seeds)")


def _late_best_epochs(per_run: list[dict], epochs: int) -> dict[tuple[str, str], list[tuple[int, int, float | None]]]:
    """Per method and modality, the finished runs whose best epoch fell in the last 20% of the epochs,
    as (position in per_run, best epoch, late gain); the gain is None for a run without a recorded
    validation curve."""
    late: dict[tuple[str, str], list[tuple[int, int, float | None]]] = {}
    for i, p in enumerate(per_run):
        if p["status"] != "finished":
            continue
        for name, m in p["metrics"].items():
            if m.get("best_epoch", 0) > LATE_BEST_EPOCH * epochs:
                late.setdefault((p["method"], name), []).append(
                    (i, int(m["best_epoch"]), late_gain(m.get("val_curve") or [], epochs)))
    return late


def _still_climbing(gain: float | None) -> bool:
    return gain is None or gain > LATE_GAIN_TOLERANCE  # no curve: nothing shows it had levelled off


def convergence_warnings(per_run: list[dict], epochs: int) -> list[str]:
    """One line per method and modality that was still improving at the end on some seed: its best
    epoch fell in the last 20% of the epochs and those epochs raised the best validation weighted F1
    by more than LATE_GAIN_TOLERANCE (a run without a recorded validation curve counts as improving).
    Such a comparison measures speed, not the method. A late best epoch on a plateau (the cosine
    schedule's flat tail) is not flagged."""
    if epochs < 5:
        return [f"Only {epochs} epoch(s): every model is still improving; compare at convergence "
                "(more epochs, best epoch well before the last)."] if per_run else []
    climbing = {key: [(i, e, g) for i, e, g in runs_ if _still_climbing(g)]
                for key, runs_ in _late_best_epochs(per_run, epochs).items()}
    lines = []
    for (method, name), runs_ in sorted(((k, r) for k, r in climbing.items() if r), key=lambda kr: kr[1][0][0]):
        listed = ", ".join(f"{e}" + (f" (+{100 * g:.1f})" if g is not None else "") for _, e, g in sorted(
            runs_, key=lambda run: run[1]))
        lines.append(f"{METHODS.get(method, method)}, {name}: best epoch {listed} of {epochs} (in the last "
                     f"{100 * (1 - LATE_BEST_EPOCH):.0f}%, which raised the best validation F1 by more than "
                     f"{100 * LATE_GAIN_TOLERANCE:.0f} point, in brackets): train longer before trusting this row.")
    return lines


def plateau_notes(per_run: list[dict], epochs: int) -> list[str]:
    """One line per method and modality whose best epoch fell late on some seed without the check
    flagging it: the late gains, so that a reader sees how flat the tail was."""
    if epochs < 5:
        return []
    lines = []
    for (method, name), runs_ in _late_best_epochs(per_run, epochs).items():
        gains = sorted(g for _, _, g in runs_ if g is not None)
        if gains and not any(_still_climbing(g) for g in gains):
            lines.append(f"{METHODS.get(method, method)}, {name}: best epoch in the last "
                         f"{100 * (1 - LATE_BEST_EPOCH):.0f}% on {len(gains)} seed(s), on a plateau: those epochs "
                         f"raised the best validation F1 by {', '.join(f'+{100 * g:.1f}' for g in gains)} points")
    return lines


def past_epoch_seconds(config: TrainingConfig) -> float | None:
    """Median seconds per epoch of the earlier trainings of the same modality folders with the same
    device, backbone and batch size (the user's run folder); None when there is none."""
    def folders(modalities) -> list[str]:
        return sorted(str(Path(m["folder"]).expanduser().resolve()) for m in modalities)

    wanted = config.to_dict()
    key = (folders(wanted["modalities"]), wanted["device"], wanted["backbone"], wanted["batch_size"])
    times = []
    for info in runs.list_runs():
        try:
            past = runs.read_run_record(info.run_dir).get("config", {})
            if (folders(past.get("modalities", [])), past.get("device"), past.get("backbone"),
                    past.get("batch_size")) != key:
                continue
        except (DataError, KeyError, TypeError, OSError):
            continue
        times += [float(h["epoch_time_s"]) for h in runs.read_history(info.run_dir) if "epoch_time_s" in h]
    return float(np.median(times)) if times else None


def comparison_trainings(methods: list[str], seeds: int) -> int:
    """How many trainings a comparison runs: one per method and seed, plus the teacher of KD/DKD
    (one per seed, shared by both)."""
    teacher = 1 if any(m in PAIRED_ONLY for m in methods) else 0
    return (len(methods) + teacher) * seeds


def check_methods(methods: list[str]) -> list[str]:
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"Unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}.")
    if not methods:
        raise ConfigError("Choose at least one method to compare.")
    return list(dict.fromkeys(methods))


def run_comparison(
    config: TrainingConfig,
    methods: list[str],
    seeds: int,
    *,
    out_dir: Path | None = None,
    on_progress: ProgressCallback | None = None,
    stop: StopToken | None = None,
    dataset: MultiModalDataset | None = None,
    settings: BaselineSettings | None = None,
    replace: bool = False,
) -> ComparisonResult:
    """Run ``methods`` on ``seeds`` random splits of the config's modality folders.

    Raises DisComKDError (DataError, ConfigError) for bad folders or settings before any training;
    a run that fails later is recorded in ``per_run`` with its reason and the comparison goes on.
    Methods that need pairing are put in ``skipped`` when the data is not paired. ``dataset``
    may be given to skip reading the folders (tests, or a GUI that already loaded them). ``out_dir``
    is checked before anything is read or trained (OutputPathError); its files are replaced only
    when ``replace``.
    """
    methods = check_methods(methods)
    out_dir = _check_comparison(config, seeds, out_dir, replace)
    emit = on_progress or (lambda p: None)
    stop = stop or StopToken()
    settings = settings or BaselineSettings()
    t0 = time.perf_counter()
    result = ComparisonResult(settings={
        "methods": methods, "seeds": seeds, "first_seed": config.seed, "config": config.to_dict(),
        "baselines": settings.to_dict(),
    })
    if dataset is None:
        try:
            dataset = _read_data(config, seeds, emit, stop)
        except Cancelled:
            result.stopped = True
            return _finish(result, [], out_dir, t0, replace=replace)
    runnable = _runnable_methods(result, methods, dataset, settings)
    _run_seed_by_seed(result, runnable, config=config, seeds=seeds, dataset=dataset, settings=settings, emit=emit,
                      stop=stop)
    result.stopped = stop.is_set()
    _explain_methods_without_a_finished_run(result, runnable)
    return _finish(result, dataset.names, out_dir, t0, runnable, replace)


def _check_comparison(config: TrainingConfig, seeds: int, out_dir: Path | None, replace: bool) -> Path | None:
    """The seeds, the settings and the output folder, checked before anything is read or trained."""
    if seeds < 1:
        raise ConfigError("Use at least one seed.")
    config.validate()
    if config.split[2] == 0:  # every method is measured on the test data: without it all would train for nothing
        raise ConfigError("A comparison measures every method on test data, but the split keeps none. Give test a "
                          "share, for example 0.7,0.1,0.2.")
    return None if out_dir is None else check_comparison_folder(out_dir, config, replace)


def _read_data(config: TrainingConfig, seeds: int, emit: ProgressCallback, stop: StopToken) -> MultiModalDataset:
    """The modality folders, read once for every method and seed (Cancelled when stopped meanwhile)."""
    reading = RunProgressHandler(lambda fraction, message: emit(CompareProgress("data", 0, seeds, fraction, message)),
                                 config.epochs)
    return load_dataset(config, reading, stop)


def _runnable_methods(result: ComparisonResult, methods: list[str], dataset: MultiModalDataset,
                      settings: BaselineSettings) -> list[str]:
    """The methods this data allows; the others go to ``result.skipped`` with the reason. The data's
    pairing, sizes and unlabelled recordings go to the result's settings."""
    result.settings["pairing"] = dataset.report.pairing.detail
    result.settings["train_counts"] = dataset.report.counts
    result.settings["unlabelled_pairs"] = dataset.report.unlabelled_pairs
    result.settings["unlabelled_unused"] = dataset.report.unlabelled_unused_text()
    runnable = []
    for m in methods:
        reason = skip_reason(m, dataset, settings)
        if reason:
            result.skipped[m] = reason
        else:
            runnable.append(m)
    return runnable


def _run_seed_by_seed(result: ComparisonResult, runnable: list[str], *, config: TrainingConfig, seeds: int,
                      dataset: MultiModalDataset, settings: BaselineSettings, emit: ProgressCallback,
                      stop: StopToken) -> None:
    """Every method on seed 0, then every method on seed 1, ... (so a stop keeps complete seeds); each
    run becomes a line of ``result.per_run``."""
    total = max(1, len(runnable) * seeds)
    teacher_cache: dict = {}
    for k in range(seeds):
        seed_config = dataclasses.replace(config, seed=config.seed + k)
        for j, method in enumerate(runnable):
            if stop.is_set():
                break
            unit = k * len(runnable) + j

            def progress(fraction: float, message: str, method=method, unit=unit, k=k) -> None:
                emit(CompareProgress(method, k, seeds, min(1.0, (unit + fraction) / total),
                                     f"{METHODS[method]}, seed {k + 1}/{seeds}: {message}"))

            progress(0.0, "starting")
            run = run_method(method, seed_config, dataset, progress, stop, settings, teacher_cache)
            result.per_run.append(_run_record(run, k))
            progress(1.0, run.status)
        teacher_cache.clear()  # one teacher per seed; free it before the next
        if stop.is_set():
            break


def _explain_methods_without_a_finished_run(result: ComparisonResult, runnable: list[str]) -> None:
    """A method whose every run failed is listed in ``result.skipped`` with the first failure's reason."""
    for method in runnable:
        attempts = [p for p in result.per_run if p["method"] == method]
        if attempts and not any(p["status"] == "finished" for p in attempts):
            failed = [p for p in attempts if p["status"] == "failed"]
            if failed:
                result.skipped[method] = f"failed: {failed[0]['reason']}"


def _run_record(run: BaselineRun, seed_index: int) -> dict:
    record = {"method": run.method, "seed_index": seed_index, "seed": run.seed, "status": run.status,
              "reason": run.reason, "time_s": run.time_s, "metrics": run.test_metrics,
              "uses_unlabelled": run.uses_unlabelled}
    if run.teacher_metrics:
        record["teacher"] = run.teacher_metrics
    return record


def _finish(result: ComparisonResult, modalities: list[str], out_dir, t0: float,
            methods: list[str] | None = None, replace: bool = False) -> ComparisonResult:
    result.rows = summarise(result.per_run, methods or [], modalities)
    result.wall_time_s = time.perf_counter() - t0
    result.settings["wall_time_s"] = result.wall_time_s
    if out_dir is not None and not result.measured_nothing:
        result.write(out_dir, replace)
    return result
