"""Command line: everything the GUI does, for a user on a server with no display.

    discomkd train --modality image=DIR --modality audio=DIR --out RUN_DIR
    discomkd continue RUN_DIR --epochs 5
    discomkd predict BUNDLE FILE_OR_DIR... [--modality NAME] [--csv OUT]
    discomkd evaluate BUNDLE --modality NAME=DIR
    discomkd info BUNDLE
    discomkd export BUNDLE --modality NAME --format onnx|torchscript [--out FILE]
    discomkd demo
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import signal
import sys
import time
import warnings
from pathlib import Path

from .config import ModalitySource
from .console import guarded_console
from .errors import DisComKDError
# The option parsing is shared with `discomkd compare`, so it lives below both in options.py; scripts
# and users still import these names from discomkd.cli.
from .options import (add_training_options, config_from_args, input_path, output_path, parse_modality_arg,
                      whole_number)
from .training.events import (BatchEnded, BestModelSaved, DataProgress, EpochEnded, RunEnded, RunStarted,
                              StageProgress, TeachingChanged, TrainingEvent, send_event)

EXIT_OK, EXIT_ERROR, EXIT_STOPPED = 0, 1, 130


class ConsoleReporter:
    """Prints trainer events: a live progress line on a terminal, one line per epoch always. A
    TrainingEventHandler: call it with an event, or give it to ``train`` as ``on_event``."""

    def __init__(self, stream=None, progress_stream=None) -> None:
        self.out = stream or sys.stdout
        self.err = progress_stream or sys.stderr
        self.live = self.err.isatty()
        self._last = 0.0

    def _bar(self, text: str) -> None:
        if self.live:
            self.err.write("\r\033[K" + text)
            self.err.flush()

    def __call__(self, event: TrainingEvent) -> None:
        send_event(self, event)

    # ----- one method per training event (training.events.TrainingEventHandler) -----------------
    def on_data_progress(self, event: DataProgress) -> None:
        self._bar(f"{event.stage}: {event.done}/{event.total} files")

    def on_run_started(self, event: RunStarted) -> None:
        self._bar("")
        print(event.summary(), file=self.out, flush=True)
        self._print_data_problems(event.run_dir)

    def on_batch_ended(self, event: BatchEnded) -> None:
        now = time.monotonic()
        if now - self._last > 0.2 or event.step == event.steps_per_epoch:
            self._last = now
            width = 24
            filled = int(width * event.progress)
            eta = _duration(event.eta_s) if event.eta_s is not None else "?"
            self._bar(f"[{'#' * filled}{'.' * (width - filled)}] {100 * event.progress:5.1f}% epoch {event.epoch} "
                      f"step {event.step}/{event.steps_per_epoch} loss {event.losses['total']:.3f} "
                      f"{event.samples_per_s:.0f} samples/s ETA {eta}")

    def on_epoch_ended(self, event: EpochEnded) -> None:
        self._bar("")
        val = "  ".join(f"{n}: acc {m['accuracy']:.3f} wF1 {m['weighted_f1']:.3f}" for n, m in event.val_metrics.items())
        print(f"epoch {event.epoch}/{event.epochs}  loss {event.train_losses['total']:.4f}  val {val or 'n/a'}  "
              f"({event.epoch_time_s:.1f} s)", file=self.out, flush=True)

    def on_teaching_changed(self, event: TeachingChanged) -> None:
        self._bar("")
        print(f"epoch {event.epoch}: {event.text}", file=self.out, flush=True)

    def on_stage_progress(self, event: StageProgress) -> None:
        self._bar(f"[{100 * event.fraction:5.1f}%] {event.text}")

    def on_best_model_saved(self, event: BestModelSaved) -> None:
        pass  # the model's path is printed once, with the run's result (_run_training)

    def on_run_ended(self, event: RunEnded) -> None:
        self._bar("")
        if self.live:
            self.err.write("\r\033[K")

    def _print_data_problems(self, run_dir: str, limit: int = 10) -> None:
        """Groups held out, skipped files and missing classes, which the user must see before waiting
        for a training."""
        from .data.split import split_group_lines
        from .errors import DataError
        from .storage import runs

        try:
            data = runs.read_run_record(Path(run_dir)).get("data", {})
        except DataError:
            return
        for line in split_group_lines(data.get("split_groups") or {}):
            print(line, file=self.out)
        counts = data.get("skipped_count") or {}
        for name, skipped in (data.get("skipped") or {}).items():
            count = counts.get(name, len(skipped))  # run.json keeps the first ones; the count is the true one
            if count:
                print(f"{name}: skipped {count} file(s):", file=self.out)
                for s in skipped[:limit]:
                    print(f"  {s['path']}: {s['reason']}", file=self.out)
                if count > limit:
                    where = Path(run_dir) / (data.get("skipped_list") or runs.RUN_FILE)
                    print(f"  … and {count - limit} more (all are listed in {where})", file=self.out)
        for name, notices in (data.get("notices") or {}).items():
            for notice in notices:
                print(f"{name}: {notice}", file=self.out)
        if data.get("unlabelled_unused"):
            print(data["unlabelled_unused"], file=self.out)
        if data.get("unlabelled_dropped"):
            from .data.dataset import unlabelled_dropped_text

            print(unlabelled_dropped_text(data["unlabelled_dropped"]), file=self.out)
        for name, classes in (data.get("missing") or {}).items():
            if classes:
                print(f"{name} has no files for class(es): {', '.join(classes)} (its classifier never sees them)",
                      file=self.out)
        self.out.flush()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{(seconds % 3600) // 60:02d}"


def _print_test_metrics(result) -> None:
    for name, m in result.test_metrics.items():
        print(f"  {name}: test accuracy {m['accuracy']:.4f}, weighted F1 {m['weighted_f1']:.4f}, "
              f"macro F1 {m['macro_f1']:.4f} (best epoch {m.get('best_epoch')}, {m['n']} test samples)")
        if m.get("ece") is not None:
            print(f"  {' ' * len(name)}  {_calibration_text(m)}")


def _calibration_text(m: dict) -> str:
    """ECE before and after temperature scaling, as `train` and `evaluate` print it."""
    if m.get("calibrated_on") is None:
        return (f"calibration: none (temperature 1: no validation split, or a model from before calibration; "
                f"`discomkd continue RUN_DIR --epochs 0` fits it), ECE {m['ece']:.4f}")
    return (f"calibration: ECE {m['ece_uncalibrated']:.4f} -> {m['ece']:.4f} with temperature {m['temperature']:.3f}; "
            f"mean confidence {m['mean_confidence_uncalibrated']:.3f} -> {m['mean_confidence']:.3f}")


def _run_training(fn, *args) -> int:
    """Run a training call with Ctrl-C mapped to a clean stop (a second Ctrl-C aborts)."""
    from .training.events import StopToken

    stop = StopToken()
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        if stop.is_set():
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        stop.request()
        print("\nStopping after this batch; the best model so far is kept (Ctrl-C again to abort).", file=sys.stderr)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        result = fn(*args, on_event=ConsoleReporter(), stop=stop)
    finally:
        signal.signal(signal.SIGINT, previous)
    if result.status == "failed":
        print(f"error: {result.reason}", file=sys.stderr)
        return EXIT_ERROR
    if result.reason:
        print(result.reason)
    _print_test_metrics(result)
    if result.bundle_path:
        print(f"model: {result.bundle_path}")
    return EXIT_STOPPED if result.status == "stopped" else EXIT_OK


def cmd_train(args) -> int:
    from .training.trainer import train

    if len(args.modality) < 2:
        print("error: DisCoM-KD needs at least two modalities; give --modality NAME=DIR twice or more.", file=sys.stderr)
        return EXIT_ERROR
    config = config_from_args(args, args.modality)
    for warning in config.split_warnings():
        print(f"warning: {warning}", file=sys.stderr)
    return _run_training(lambda **kw: train(config, run_dir=args.out, run_name=args.name, **kw))


def cmd_continue(args) -> int:
    from .training.trainer import continue_run

    return _run_training(lambda **kw: continue_run(args.run_dir, args.epochs, **kw))


def cmd_demo(args) -> int:
    from .storage.paths import demo_modalities
    from .training.trainer import train

    modalities = [ModalitySource(name, str(folder)) for name, folder in demo_modalities().items()]
    config = config_from_args(args, modalities)
    for warning in config.split_warnings():
        print(f"warning: {warning}", file=sys.stderr)
    print("Demo: real handwritten digits (MNIST) and real spoken digits (FSDD), unpaired; see resources/demo/LICENSES.md")
    return _run_training(lambda **kw: train(config, run_dir=args.out, run_name="demo", **kw))


def cmd_predict(args) -> int:
    from .inference.predict import Prediction, Predictor, write_predictions_csv
    from .model.calibration import CALIBRATE_COMMAND, NOT_CALIBRATED_WHY, is_calibrated
    from .storage.outputs import check_output_file

    if args.uncertain_below is not None and not 0 <= args.uncertain_below <= 1:
        print("error: --uncertain-below is a confidence from 0 to 1 (e.g. 0.8).", file=sys.stderr)
        return EXIT_ERROR
    inputs = [args.bundle, *args.files]
    if args.csv:  # before any prediction: a CSV that cannot be written must not cost the work
        check_output_file(args.csv, inputs, args.force, "the CSV file")
    predictor = Predictor.from_path(args.bundle, uncertain_below=args.uncertain_below)
    data_folders = list(predictor.bundle.training_folders().values())  # never written in, though not read here
    if args.csv:
        check_output_file(args.csv, inputs, args.force, "the CSV file", data_folders)
    results = predictor.predict_files(args.files, args.modality)
    if not results:
        print("error: no file to predict in the given paths.", file=sys.stderr)
        return EXIT_ERROR
    failures = 0
    for r in results:
        if isinstance(r, Prediction):
            top = ", ".join(f"{c} {p:.3f}" for c, p in r.top(args.top_k))
            print(f"{r.path}\t{r.modality}\t{r.label}\t{r.confidence:.3f}\t{'UNCERTAIN' if r.uncertain else 'ok'}\t[{top}]")
        else:
            failures += 1
            print(f"{r.path}\terror: {r.message}", file=sys.stderr)
    answers = [r for r in results if isinstance(r, Prediction)]
    if answers:
        used = sorted({r.modality for r in answers})
        thresholds = ", ".join(f"{m} {predictor.uncertain_below(m):.3f}" for m in used)
        uncalibrated = [m for m in used if not is_calibrated(predictor.bundle.calibration(m))]
        source = ("--uncertain-below" if args.uncertain_below is not None else
                  "the model default, from its validation split" if not uncalibrated else "the model default")
        calibration = ("probabilities are calibrated" if not uncalibrated else
                       f"probabilities of {', '.join(uncalibrated)} are NOT calibrated ({NOT_CALIBRATED_WHY}): "
                       f"{CALIBRATE_COMMAND}")
        print(f"{sum(r.uncertain for r in answers)} of {len(answers)} answer(s) UNCERTAIN: confidence below "
              f"{thresholds} ({source}); {calibration}")
    if args.csv:
        write_predictions_csv(results, args.csv, predictor.classes, replace=args.force, inputs=inputs,
                              data_folders=data_folders)
        print(f"wrote {args.csv}")
    return EXIT_OK if failures < len(results) else EXIT_ERROR


def cmd_evaluate(args) -> int:
    from .storage.outputs import check_output_file, write_output_file
    from .training.evaluation import evaluate_bundle_on_folder

    from .model.bundle import load_bundle

    source = args.modality
    inputs = [args.bundle, source.folder]
    if args.json:
        check_output_file(args.json, inputs, args.force, "the JSON file")
    bundle = load_bundle(args.bundle)
    data_folders = list(bundle.training_folders().values())  # never written in, though not read here
    if args.json:
        check_output_file(args.json, inputs, args.force, "the JSON file", data_folders)
    metrics = evaluate_bundle_on_folder(bundle, source.name, source.folder)
    print(f"{source.name}: {metrics['n']} files, accuracy {metrics['accuracy']:.4f}, "
          f"weighted F1 {metrics['weighted_f1']:.4f}, macro F1 {metrics['macro_f1']:.4f}")
    for row in metrics["per_class"]:
        if row["support"]:
            print(f"  {row['class']:>12}: precision {row['precision']:.3f} recall {row['recall']:.3f} "
                  f"f1 {row['f1']:.3f} ({row['support']})")
    print(_calibration_text(metrics))
    flagged = metrics["uncertain"]
    if flagged["share"] > 0:
        print(f"uncertain (confidence below {flagged['below']:.3f}): {100 * flagged['share']:.1f}% of the answers, "
              f"accuracy {_score(flagged['accuracy_flagged'])} flagged, {_score(flagged['accuracy_not_flagged'])} not flagged")
    if metrics["skipped"]:
        print(f"skipped {len(metrics['skipped'])} file(s):")
        for s in metrics["skipped"][:20]:
            print(f"  {s['path']}: {s['reason']}")
        if len(metrics["skipped"]) > 20:
            print(f"  … and {len(metrics['skipped']) - 20} more"
                  + (f" (all are listed in {args.json})" if args.json else " (--json FILE writes them all)"))
    if metrics["unknown_classes"]:
        print(f"classes not known to the model (left out): {', '.join(metrics['unknown_classes'])}")
    if args.json:
        write_output_file(args.json, lambda fh: fh.write(json.dumps(metrics, indent=2)), inputs,
                          args.force, text=True, what="the JSON file", data_folders=data_folders)
        print(f"wrote {args.json}")
    return EXIT_OK


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def cmd_info(args) -> int:
    from .model.bundle import load_bundle
    from .storage import runs

    target = Path(args.bundle)
    if target.is_dir():  # a run folder: its status (a killed run shows as interrupted), then its model
        info = runs.run_info(target)
        record = runs.read_run_record(target)
        print(f"run “{info.name}”: {info.status}, {info.epochs_done} of {record.get('epochs_target', '?')} epochs"
              f" ({record.get('reason', '')})".replace(" ()", ""))
        if info.bundle_path is None:
            print("no model saved yet")
            return EXIT_OK
        target = info.bundle_path
    bundle = load_bundle(target)
    if args.json:
        print(json.dumps(bundle.metadata, indent=2))
    else:
        print("\n".join(bundle.summary_lines()))
    return EXIT_OK


def cmd_export(args) -> int:
    from .inference.export import export_modality

    result = export_modality(args.bundle, args.modality, args.format, args.out, args.check or None, replace=args.force)
    print(f"wrote {result.model_path} ({result.format}; input 'input', outputs 'logits' and 'probabilities')")
    print(f"wrote {result.sidecar_path} (how to preprocess a raw file, classes)")
    print(f"check: probabilities match the model within {result.max_abs_diff:.1e} on {result.checked_on}")
    if result.calibrated is False:
        from .inference.export import calibration_note

        print(f"warning: the exported probabilities are {calibration_note({})}", file=sys.stderr)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="discomkd", description="DisCoM-KD: train one classifier per modality "
                                     "with cross-modal distillation, then predict from any single modality.")
    parser.add_argument("--version", action="version", version=f"discomkd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train DisCoM-KD on modality folders (one sub-folder per class)")
    p.add_argument("--modality", action="append", type=parse_modality_arg, default=[], metavar="NAME=DIR[:bands=4,3,2]",
                   help="a modality folder; repeat for each modality. Options: :bands=… (1-based), :size=HxW, "
                        ":length=N, :augmentation=none|shift|flips_rot90|flips_rot90_shift, :kind=image|audio|signal")
    p.add_argument("--out", type=output_path, help="run folder (default: a new folder under the per-user runs directory)")
    p.add_argument("--name", help="run name")
    add_training_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("continue", help="continue a stopped or finished run for more epochs")
    p.add_argument("run_dir", type=input_path)
    p.add_argument("--epochs", type=whole_number(0), required=True,
                   help="additional epochs (0: only refit the calibration on the validation split and test again)")
    p.set_defaults(func=cmd_continue)

    p = sub.add_parser("demo", help="train on the embedded demo data (digits: images + speech)")
    p.add_argument("--out", type=output_path, help="run folder")
    add_training_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("predict", help="predict files or folders with a model bundle")
    p.add_argument("bundle", type=input_path)
    p.add_argument("files", nargs="+", type=input_path, metavar="FILE_OR_DIR")
    p.add_argument("--modality", help="the files' modality (default: inferred from kind and shape)")
    p.add_argument("--csv", type=output_path, help="also write the predictions to this CSV file (a new file, unless --force)")
    p.add_argument("--force", action="store_true", help="replace the --csv file if it exists (never a file being predicted)")
    p.add_argument("--top-k", type=whole_number(1), default=3, help="classes shown per file (default 3)")
    p.add_argument("--uncertain-below", type=float, metavar="CONFIDENCE",
                   help="mark answers whose (calibrated) confidence is below this, from 0 to 1, as UNCERTAIN "
                        "(default: each modality's threshold from its validation split, stored in the model)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="evaluate a model on a labelled folder of one modality (accuracy, F1, "
                                        "calibration error `ece` before and after temperature scaling)")
    p.add_argument("bundle", type=input_path)
    p.add_argument("--modality", type=parse_modality_arg, required=True, metavar="NAME=DIR")
    p.add_argument("--json", type=output_path, help="write all metrics to this JSON file (a new file, unless --force)")
    p.add_argument("--force", action="store_true", help="replace the --json file if it exists (never an input)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("info", help="show what a model bundle (or a run folder) contains")
    p.add_argument("bundle", type=input_path, help="a .discomkd model file, or a run folder")
    p.add_argument("--json", action="store_true", help="print the full metadata as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("export", help="export one modality's classifier to ONNX or TorchScript, with a JSON "
                                      "sidecar that says how to preprocess a raw file")
    p.add_argument("bundle", type=input_path)
    p.add_argument("--modality", required=True, help="the modality whose classifier to export")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx",
                   help="onnx needs the export extra: pip install 'discomkd-studio[export]'")
    p.add_argument("--out", type=output_path, help="the network's file (default: beside the bundle, BUNDLE-MODALITY.onnx or .pt); "
                                 "the sidecar is the same name plus .json")
    p.add_argument("--check", nargs="*", default=[], metavar="FILE_OR_DIR",
                   help="files to check the export on (default: files of the training folder, when present)")
    p.add_argument("--force", action="store_true",
                   help="replace the --out file and its sidecar if they exist (never the model bundle or an input)")
    p.set_defaults(func=cmd_export)

    from .compare_command import add_compare_parser

    add_compare_parser(sub)
    return parser


def _escape_file_name_bytes(exc: UnicodeError):
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    from .storage.paths import printable_name

    text = printable_name(exc.object[exc.start:exc.end])
    return text.encode("ascii", "backslashreplace").decode("ascii"), exc.end


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    # A file name with bytes that are not UTF-8 is printed escaped (caf\xe9.png), never a UnicodeEncodeError.
    codecs.register_error("discomkd-escape", _escape_file_name_bytes)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="discomkd-escape")
    # A library warning is one line on the console, never the source line numpy or torch would print.
    warnings.showwarning = _show_warning
    # The console is a courtesy: a closed pipe (| head), a full device or no console at all loses the
    # output, never the work (console.py).
    with guarded_console():
        parser = build_parser()
        args = parser.parse_args(argv)
        try:
            return args.func(args)
        except DisComKDError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print("aborted", file=sys.stderr)
            return EXIT_STOPPED
        except Exception as exc:  # noqa: BLE001 - out of memory, a failing disk, a bug: a message, never a traceback
            if os.environ.get("DISCOMKD_DEBUG"):
                raise
            print(f"error: {unexpected_error_text(args.command, exc)}", file=sys.stderr)
            return EXIT_ERROR


def unexpected_error_text(command: str, exc: BaseException) -> str:
    """What a command that failed outside the engine's own checks says: out of memory, a file system
    error (a disk that fails, a permission), or anything else; every output is written atomically, so
    none was left half-written."""
    kept = "No output was written or half-written; earlier files were kept."
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower() or "not enough memory" in str(exc).lower():
        return (f"'{command}' ran out of memory. {kept} Close other programs, or give it fewer or smaller files "
                "(for example a folder at a time), and try again.")
    if isinstance(exc, OSError):
        where = f" '{exc.filename}'" if exc.filename else ""
        return (f"'{command}' could not use{where}: {exc.strerror or exc}. {kept} Check that the file or folder is "
                "there, can be read, and that its disk works, then try again.")
    return (f"'{command}' failed unexpectedly ({type(exc).__name__}: {exc}). {kept} Set DISCOMKD_DEBUG=1 to see "
            "where it failed, and report it with the command you ran.")


def run() -> None:
    """The ``discomkd`` command (console script and ``python -m discomkd``)."""
    exit_now(main())


def exit_now(code: int) -> None:
    """Flush the console and leave without the interpreter's teardown.

    When main() returns, every file of the command is written, closed and renamed into place (the
    engine writes atomically and starts no threads or exit handlers); all that is left is Python
    unloading torch's ~1,900 modules, 0.5-1 s of waiting after "Finished" (benchmarks/RESULTS.md,
    time to accuracy)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or console: the output is a courtesy (console.py)
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
