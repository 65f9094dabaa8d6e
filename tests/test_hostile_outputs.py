"""Nothing lost on the way out: every output path a user names, run folders, and the console.

The rule under test (docs/architecture.md, "Output paths"): an output is checked before any work;
an existing file is replaced only when the user asked (--force); never one of the command's own
inputs, even with --force; a folder that is not a run is never claimed as one and Delete removes
only what a run wrote; the console going away never costs the work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hostile import make_image_modality, make_signal_modality
from discomkd.cli import main
from discomkd.config import ModalitySource, TrainingConfig
from discomkd.errors import OutputExistsError, OutputPathError, RunFolderError
from discomkd.storage import runs
from discomkd.storage.atomic import atomic_write
from discomkd.training.events import BatchEnded, StopToken
from discomkd.training.trainer import train

TRAINING = ["--epochs", "1", "--embed-dim", "8", "--batch-size", "8", "--device", "cpu"]


def _config(folders: dict[str, Path], **changes) -> TrainingConfig:
    settings = dict(embed_dim=8, batch_size=8, epochs=1, learning_rate=3e-3, device="cpu", seed=0)
    settings.update(changes)
    return TrainingConfig(modalities=[ModalitySource(n, str(f)) for n, f in folders.items()], **settings)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("outputs-data")
    return {"image": make_image_modality(root / "image"),
            "motion": make_signal_modality(root / "motion", 6, (40, 48, 56), seed=1)}


@pytest.fixture(scope="module")
def bundle(data, tmp_path_factory) -> Path:
    result = train(_config(data), run_dir=tmp_path_factory.mktemp("outputs-run") / "run")
    assert result.status == "finished", result.reason
    return Path(result.bundle_path)


@pytest.fixture
def work_never_starts(monkeypatch):
    """Any reading of data, prediction, evaluation or export work fails the test: outputs are checked first."""
    import discomkd.inference.export as export
    import discomkd.inference.predict as predict
    import discomkd.training.compare as compare
    import discomkd.training.evaluation as evaluation
    import discomkd.training.trainer as trainer

    def started(*args, **kwargs):
        raise AssertionError("work started before the output was checked")

    monkeypatch.setattr(compare, "load_dataset", started)
    monkeypatch.setattr(trainer, "load_dataset", started)
    monkeypatch.setattr(predict.Predictor, "predict_files", started)
    monkeypatch.setattr(evaluation, "evaluate_bundle_on_folder", started)
    monkeypatch.setattr(export, "_check_inputs", started)


def _cli_writers(bundle: Path, data: dict[str, Path], out: Path) -> dict[str, list[str]]:
    """Each command that writes a file the user names, with that file at ``out``."""
    png = sorted((data["image"] / "a").iterdir())[0]
    return {
        "export": ["export", str(bundle), "--modality", "image", "--format", "torchscript", "--out", str(out)],
        "predict": ["predict", str(bundle), str(png), "--csv", str(out)],
        "evaluate": ["evaluate", str(bundle), "--modality", f"image={data['image']}", "--json", str(out)],
    }


# ----- class 1: an existing file is replaced only when asked, an input never -----------------------

@pytest.mark.parametrize("command", ["export", "predict", "evaluate"])
def test_an_existing_output_file_is_kept_unless_force_is_given(command, bundle, data, tmp_path, capsys):
    out = tmp_path / "mine.out"
    out.write_text("my notes")
    args = _cli_writers(bundle, data, out)[command]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "already exists and was not replaced" in err and "--force" in err and "Traceback" not in err
    assert out.read_text() == "my notes"
    assert main([*args, "--force"]) == 0, capsys.readouterr().err
    assert out.read_bytes() != b"my notes"


def test_export_never_replaces_its_sidecar_silently(bundle, tmp_path, capsys):
    out = tmp_path / "image.pt"
    (tmp_path / "image.pt.json").write_text("my sidecar")
    assert main(["export", str(bundle), "--modality", "image", "--format", "torchscript", "--out", str(out)]) == 1
    assert "image.pt.json' already exists" in capsys.readouterr().err
    assert not out.exists() and (tmp_path / "image.pt.json").read_text() == "my sidecar"


def test_the_default_export_path_is_not_replaced_by_a_second_export(bundle, capsys):
    args = ["export", str(bundle), "--modality", "motion", "--format", "torchscript"]
    assert main(args) == 0
    first = (bundle.parent / "model-motion.pt").read_bytes()
    assert main(args) == 1 and "already exists" in capsys.readouterr().err
    assert (bundle.parent / "model-motion.pt").read_bytes() == first


@pytest.mark.parametrize("command, target", [
    ("export", "bundle"), ("predict", "bundle"), ("predict", "classified file"), ("predict", "in classified folder"),
    ("evaluate", "bundle"), ("evaluate", "in data folder"), ("predict", "link to classified file"),
    ("export checked elsewhere", "in data folder"),
])
def test_a_command_never_writes_over_its_own_inputs_even_with_force(command, target, bundle, data, tmp_path, capsys):
    png = sorted((data["image"] / "a").iterdir())[0]
    out = {"bundle": bundle, "classified file": png, "in classified folder": data["image"] / "b" / "001.png",
           "in data folder": data["image"] / "metrics.json", "link to classified file": tmp_path / "link.csv"}[target]
    if target == "link to classified file":
        out.symlink_to(png)
    args = _cli_writers(bundle, data, out).get(command)
    if target == "in classified folder":
        args = ["predict", str(bundle), str(data["image"]), "--csv", str(out)]
    if command == "export checked elsewhere":  # the training folder is data even when --check reads other files
        other = tmp_path / "check.png"
        other.write_bytes(png.read_bytes())
        args = [*_cli_writers(bundle, data, out)["export"], "--check", str(other)]
    before = {"bundle": bundle.read_bytes(), **_snapshot(data["image"])}
    assert main([*args, "--force"]) == 1
    err = capsys.readouterr().err
    if command == "export checked elsewhere":  # export reads the model and the checked files, not its training data
        assert "a data folder the model was trained on" in err and "reads as input" not in err
    else:
        assert "one of this command's inputs" in err or "reads as input" in err
    assert "Traceback" not in err
    assert {"bundle": bundle.read_bytes(), **_snapshot(data["image"])} == before
    assert not (data["image"] / "metrics.json").exists()


@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
def test_an_output_in_a_training_folder_the_command_does_not_read_says_so_truly(command, bundle, data, capsys,
                                                                                 work_never_starts):
    """Refused outputs in the model's training folders were said to be in a folder "which this command reads
    as input", also where the command reads only other files (here: image files, the motion folder)."""
    out = data["motion"] / "out.csv"
    before = _snapshot(data["motion"])
    assert main([*_cli_writers(bundle, data, out)[command], "--force"]) == 1
    err = capsys.readouterr().err
    assert f"would be inside '{data['motion']}', a data folder the model was trained on" in err
    assert "reads as input" not in err and "Traceback" not in err
    assert _snapshot(data["motion"]) == before


def test_exporting_a_run_model_never_replaces_the_model_itself(bundle, data, tmp_path):
    with pytest.raises(OutputPathError, match="one of this command's inputs"):
        runs.export_bundle(bundle.parent, bundle, replace=True)
    for own in (runs.RUN_FILE, runs.CHECKPOINT_FILE, runs.HISTORY_FILE, runs.TEST_PREDICTIONS_FILE):  # nor the run's files
        before = (bundle.parent / own).read_bytes()
        with pytest.raises(OutputPathError, match="one of this command's inputs"):
            runs.export_bundle(bundle.parent, bundle.parent / own, replace=True)
        assert (bundle.parent / own).read_bytes() == before
    with pytest.raises(OutputPathError, match="would be inside .*a data folder the model was trained on") as caught:
        runs.export_bundle(bundle.parent, data["motion"] / "a" / "copy.discomkd", replace=True)  # nor into its data
    assert "reads as input" not in str(caught.value)  # copying the model reads none of its data
    assert not (data["motion"] / "a" / "copy.discomkd").exists()
    copy = tmp_path / "copy.discomkd"
    copy.write_text("older copy")
    with pytest.raises(OutputExistsError):
        runs.export_bundle(bundle.parent, copy)
    assert copy.read_text() == "older copy"
    runs.export_bundle(bundle.parent, copy, replace=True)
    assert copy.read_bytes() == bundle.read_bytes()


@pytest.mark.parametrize("command", ["export", "predict", "evaluate"])
@pytest.mark.parametrize("own", [runs.RUN_FILE, runs.CHECKPOINT_FILE, runs.HISTORY_FILE, "RUN.JSON"])
def test_no_command_writes_over_a_run_folders_own_files_even_with_force(command, own, bundle, data, capsys):
    """export --out run/checkpoint.pt --force replaced the run's checkpoint with a TorchScript network,
    predict --csv run/run.json --force its record with a CSV: the run could no longer be continued,
    listed or opened. A run's own files are its, like an input."""
    run_dir = bundle.parent
    before = _snapshot(run_dir)
    assert main([*_cli_writers(bundle, data, run_dir / own)[command], "--force"]) == 1
    err = capsys.readouterr().err
    assert "of the training run in" in err and "even when replacing is allowed" in err and "Traceback" not in err
    assert _snapshot(run_dir) == before


@pytest.mark.parametrize("command", ["export", "predict", "evaluate"])
def test_no_output_is_written_in_any_of_the_models_training_folders(command, bundle, data, capsys):
    """Exporting the image classifier into the motion data folder, or a predictions CSV into the
    model's data, was allowed: only the exported modality's own folder (or the command's inputs)
    counted as data."""
    out = data["motion"] / "a" / "written.out"
    before = _snapshot(data["motion"])
    assert main([*_cli_writers(bundle, data, out)[command], "--force"]) == 1
    err = capsys.readouterr().err
    assert f"would be inside '{data['motion']}'" in err and "Traceback" not in err
    assert _snapshot(data["motion"]) == before


@pytest.mark.parametrize("command", ["export", "predict", "evaluate"])
def test_an_output_file_named_with_a_trailing_slash_is_refused(command, bundle, data, tmp_path, capsys):
    """'--csv results/' (a folder meant, not there yet) was written as a file named 'results'."""
    out = str(tmp_path / "results") + "/"
    assert main(_cli_writers(bundle, data, out)[command]) == 1
    err = capsys.readouterr().err
    assert "ends with a slash, so it names a folder" in err and "Traceback" not in err
    assert not (tmp_path / "results").exists() and not (tmp_path / "results.json").exists()


def test_continuing_the_model_file_instead_of_its_run_folder_says_which_folder(bundle, capsys):
    """'discomkd continue run/model.discomkd' said 'The run record ... is damaged ([Errno 20] Not a directory ...)'."""
    assert main(["continue", str(bundle), "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert "is a file, not a training run folder" in err and f"Give its folder: '{bundle.parent}'" in err
    assert "Errno" not in err and "damaged" not in err


def test_a_file_that_appears_during_the_write_is_kept(tmp_path):
    target = tmp_path / "out.csv"

    def write(fh):
        fh.write(b"ours")
        target.write_text("another program's")  # created between our check and our rename

    with pytest.raises(OutputExistsError, match="appeared while it was being written"):
        atomic_write(target, write, replace=False)
    assert target.read_text() == "another program's"
    assert not list(tmp_path.glob(".*.tmp"))
    atomic_write(tmp_path / "new.csv", lambda fh: fh.write(b"ours"), replace=False)
    assert (tmp_path / "new.csv").read_bytes() == b"ours"



@pytest.mark.parametrize("force", [False, True])
def test_an_export_the_disk_cannot_hold_leaves_no_half_of_the_pair(force, bundle, tmp_path, capsys, monkeypatch):
    """The network and its sidecar are written together: a disk that fills up on the sidecar keeps the
    earlier pair as it was (or leaves none), never a new network beside an old sidecar or without one."""
    import errno

    import discomkd.storage.atomic as atomic

    out = tmp_path / "device.pt"
    if force:  # an earlier export of the other modality at the same name
        assert main(["export", str(bundle), "--modality", "motion", "--format", "torchscript", "--out", str(out)]) == 0
    before = _snapshot(tmp_path)
    write_temporary = atomic._write_temporary

    def disk_full_on_the_sidecar(path, write, text):
        if path.name.endswith(".json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_temporary(path, write, text)

    monkeypatch.setattr(atomic, "_write_temporary", disk_full_on_the_sidecar)
    args = ["export", str(bundle), "--modality", "image", "--format", "torchscript", "--out", str(out)]
    assert main([*args, *(["--force"] if force else [])]) == 1
    err = capsys.readouterr().err
    assert "is full" in err and "Traceback" not in err
    assert _snapshot(tmp_path) == before and not list(tmp_path.glob(".*.tmp"))

# ----- class 3: outputs are checked before any work ------------------------------------------------

@pytest.mark.parametrize("where", ["a file", "under a file", "unwritable"])
def test_compare_out_is_checked_before_any_training(where, data, tmp_path, capsys, work_never_starts, monkeypatch):
    blocker = tmp_path / "results.txt"
    blocker.write_text("mine")
    out = {"a file": blocker, "under a file": blocker / "cmp", "unwritable": tmp_path / "ro" / "cmp"}[where]
    if where == "unwritable":  # as root, permissions cannot make a folder unwritable: a read-only mount can
        import discomkd.storage.outputs as outputs

        (tmp_path / "ro").mkdir()
        monkeypatch.setattr(outputs.os, "access", lambda path, mode: Path(path) != tmp_path / "ro")
    code = main(["compare", "--modality", f"image={data['image']}", "--modality", f"motion={data['motion']}",
                 "--seeds", "1", "--methods", "discomkd,student", *TRAINING, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert {"a file": "is a file, not a folder", "under a file": "is a file, so",
            "unwritable": "cannot be written"}[where] in err
    assert blocker.read_text() == "mine"


def test_compare_keeps_an_earlier_comparison_unless_force(data, tmp_path, capsys, work_never_starts):
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "comparison.md").write_text("last week's")
    code = main(["compare", "--modality", f"image={data['image']}", "--modality", f"motion={data['motion']}",
                 "--seeds", "1", *TRAINING, "--out", str(tmp_path / "cmp")])
    assert code == 1 and "comparison.md' already exists" in capsys.readouterr().err
    assert (tmp_path / "cmp" / "comparison.md").read_text() == "last week's"


def test_compare_into_a_data_folder_is_refused_before_any_training(data, capsys, work_never_starts):
    code = main(["compare", "--modality", f"image={data['image']}", "--modality", f"motion={data['motion']}",
                 "--seeds", "1", *TRAINING, "--out", str(data["motion"] / "cmp")])
    assert code == 1 and "reads as input" in capsys.readouterr().err
    assert not (data["motion"] / "cmp").exists()


@pytest.mark.parametrize("command", ["export", "predict", "evaluate"])
@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_file_outputs_are_checked_before_any_work(command, where, bundle, data, tmp_path, capsys, work_never_starts):
    (tmp_path / "file.txt").write_text("mine")
    out = {"a folder": tmp_path, "under a file": tmp_path / "file.txt" / "out.csv"}[where]
    assert main([*_cli_writers(bundle, data, out)[command], "--force"]) == 1
    err = capsys.readouterr().err
    assert {"a folder": "is a folder", "under a file": "is a file, so"}[where] in err and "Traceback" not in err
    assert (tmp_path / "file.txt").read_text() == "mine"


def test_train_out_under_a_file_is_refused_before_reading_data(data, tmp_path, work_never_starts):
    (tmp_path / "file.txt").write_text("mine")
    result = train(_config(data), run_dir=tmp_path / "file.txt" / "run")
    assert result.status == "failed" and "file.txt" in result.reason
    assert (tmp_path / "file.txt").read_text() == "mine"


# ----- class 2: run folders ------------------------------------------------------------------------

@pytest.mark.parametrize("where, message", [
    ("the data folder", "is the data folder"),
    ("inside the data folder", "is inside the data folder"),
    ("above the data folder", "holds the data folder"),
    ("a folder of notes", "already holds files that are not a training run"),
])
def test_train_out_never_claims_a_folder_that_is_not_a_run(where, message, data, tmp_path, work_never_starts):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    out = {"the data folder": data["image"], "inside the data folder": data["image"] / "runs" / "r1",
           "above the data folder": data["image"].parent, "a folder of notes": notes}[where]
    before = _snapshot(data["image"].parent)
    result = train(_config(data), run_dir=out)
    assert result.status == "failed" and message in result.reason, result.reason
    assert "Choose" in result.reason
    assert _snapshot(data["image"].parent) == before and (notes / "todo.txt").read_text() == "mine"
    assert not (data["image"] / "runs").exists() and not (notes / runs.RUN_FILE).exists()


def test_a_folder_with_only_os_litter_is_empty_enough(data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    assert train(_config(data), run_dir=out).status == "finished"
    assert runs.delete_run(out) == [] and not out.exists()


def test_delete_removes_only_what_the_run_wrote(data, tmp_path):
    out = tmp_path / "run"
    assert train(_config(data), run_dir=out).status == "finished"
    (out / "my notes.txt").write_text("mine")  # put there later, by the user
    (out / "photos").mkdir()
    (out / "photos" / "cat.png").write_bytes(b"a photo")
    (out / ".model.discomkd-x1.tmp").write_bytes(b"half a model")
    refused = train(_config(data), run_dir=out)
    assert refused.status == "failed" and "already holds a run" in refused.reason
    kept = runs.delete_run(out)
    assert sorted(p.name for p in kept) == ["my notes.txt", "photos"]
    assert sorted(p.name for p in out.iterdir()) == ["my notes.txt", "photos"]
    assert (out / "photos" / "cat.png").read_bytes() == b"a photo"
    assert runs.list_runs(tmp_path) == []


def _stop_at_first_batch(stop: StopToken):
    def on_event(event):
        if isinstance(event, BatchEnded):
            stop.request()
    return on_event


def test_a_run_stopped_before_its_first_epoch_blocks_nothing(data, tmp_path, capsys):
    out = tmp_path / "run"
    stop = StopToken()
    first = train(_config(data), run_dir=out, on_event=_stop_at_first_batch(stop), stop=stop)
    assert first.status == "stopped" and first.bundle_path is None
    assert runs.never_trained(out)
    again = train(_config(data, epochs=2), run_dir=out)  # a new training may take the folder
    assert again.status == "finished", again.reason
    assert runs.read_run_record(out)["epochs_done"] == 2


def test_continue_trains_a_run_that_ended_no_epoch_from_the_start(data, tmp_path, capsys):
    out = tmp_path / "run"
    stop = StopToken()
    assert train(_config(data), run_dir=out, on_event=_stop_at_first_batch(stop), stop=stop).status == "stopped"
    assert main(["continue", str(out), "--epochs", "2"]) == 0, capsys.readouterr().err
    record = runs.read_run_record(out)
    assert record["status"] == "finished" and record["epochs_done"] == 2 and (out / runs.BUNDLE_FILE).exists()


def test_a_run_killed_before_its_first_epoch_says_both_ways_on(data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    runs.write_run_record(out, {"name": "killed", "created": "2026-01-01T12:00:00", "status": "running",
                                "epochs_done": 0, "config": _config(data).to_dict()})
    assert main(["info", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "interrupted" in shown and "Continue it" in shown and "new training in the same folder" in shown
    assert main(["train", "--modality", f"image={data['image']}", "--modality", f"motion={data['motion']}",
                 "--out", str(out), *TRAINING]) == 0, capsys.readouterr().err
    assert runs.read_run_record(out)["status"] == "finished"


def test_a_run_with_a_model_is_still_never_overwritten(data, tmp_path):
    out = tmp_path / "run"
    assert train(_config(data), run_dir=out).status == "finished"
    (out / runs.CHECKPOINT_FILE).unlink()  # only the model is left: still worth keeping
    result = train(_config(data), run_dir=out)
    assert result.status == "failed" and "already holds a run" in result.reason


@pytest.mark.parametrize("record", ['{"config": "x"}', '{"config": {"modalities": 3}}',
                                    '{"status": "running", "epochs_done": "a"}', '{"classes": 7}',
                                    '{"test_metrics": [1]}', '{"config": {"modalities": [{"nom": "image"}]}}'])
def test_a_run_record_of_the_wrong_shape_is_refused_with_why(record, tmp_path, capsys):
    """A run.json edited by hand (valid JSON of another shape) made 'discomkd info RUN' print a Python
    traceback (AttributeError, TypeError, ValueError from run_info), and the Runs page's listing fail."""
    run_dir = tmp_path / "odd"
    run_dir.mkdir()
    (run_dir / runs.RUN_FILE).write_text(record)
    assert main(["info", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert "is damaged" in err and "Traceback" not in err
    assert [i.run_dir for i in runs.list_runs(tmp_path)] == []  # left out of the list, the others shown


def test_claim_refuses_data_folders_directly(data):
    with pytest.raises(RunFolderError, match="is inside the data folder"):
        runs.claim_run_dir(data["motion"] / "a" / "run", data_folders=[data["motion"]])
    assert not (data["motion"] / "a" / "run").exists()



def test_a_data_folder_named_in_another_case_is_still_the_data_folder(data, monkeypatch):
    """On a case-insensitive file system (macOS, Windows) 'MOTION/a' is inside the data folder
    'motion'. Emulated here: this test's file system tells two names apart by case."""
    real_samefile = os.path.samefile

    def case_insensitive(a, b):
        return str(a).lower() == str(b).lower() or real_samefile(a, b)

    monkeypatch.setattr(os.path, "samefile", case_insensitive)
    upper = data["motion"].parent / data["motion"].name.upper() / "a" / "run"
    with pytest.raises(RunFolderError, match="is inside the data folder"):
        runs.claim_run_dir(upper, data_folders=[data["motion"]])
    assert not upper.exists()

# ----- class 4: the console is a courtesy ---------------------------------------------------------

def _train_command(data: dict[str, Path], out: Path) -> list[str]:
    return [sys.executable, "-m", "discomkd", "train", "--modality", f"image={data['image']}",
            "--modality", f"motion={data['motion']}", "--out", str(out), *TRAINING]


ENV = dict(os.environ, OMP_NUM_THREADS="1")


def test_training_finishes_when_nobody_reads_its_output(data, tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `| head` does once it has its lines: every write gets EPIPE
    try:
        proc = subprocess.run(_train_command(data, tmp_path / "run"), stdout=write_end, stderr=subprocess.PIPE,
                              text=True, env=ENV, timeout=240)
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert runs.read_run_record(tmp_path / "run")["status"] == "finished"


def test_training_piped_into_head_finishes_and_is_recorded(data, tmp_path):
    command = " ".join(f"'{a}'" for a in _train_command(data, tmp_path / "run")) + " | head -1"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, env=ENV,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1 and "Traceback" not in proc.stderr
    assert runs.read_run_record(tmp_path / "run")["status"] == "finished"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_stdout_on_a_full_device_is_not_the_runs_disk_being_full(data, tmp_path):
    with open("/dev/full", "w") as full:
        proc = subprocess.run(_train_command(data, tmp_path / "run"), stdout=full, stderr=subprocess.PIPE,
                              text=True, env=ENV, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "is full" not in proc.stderr and "Traceback" not in proc.stderr
    assert runs.read_run_record(tmp_path / "run")["status"] == "finished"


def test_training_without_any_console_finishes(data, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdout", None)  # pythonw, or a windowed frozen app
    monkeypatch.setattr(sys, "stderr", None)
    assert main(["train", "--modality", f"image={data['image']}", "--modality", f"motion={data['motion']}",
                 "--out", str(tmp_path / "run"), *TRAINING]) == 0
    assert runs.read_run_record(tmp_path / "run")["status"] == "finished"
    assert main(["info", str(tmp_path / "run")]) == 0


def test_a_closed_console_mid_training_loses_only_the_output(data, tmp_path, monkeypatch):
    import io

    closed = io.StringIO()
    closed.close()  # writing raises ValueError: I/O operation on closed file
    monkeypatch.setattr(sys, "stdout", closed)
    assert main(["train", "--modality", f"image={data['image']}", "--modality", f"motion={data['motion']}",
                 "--out", str(tmp_path / "run"), *TRAINING]) == 0
    assert runs.read_run_record(tmp_path / "run")["status"] == "finished"


@pytest.mark.parametrize("pipe", ["closed pipe", "head"])
def test_info_into_a_pipe_that_closes_prints_no_traceback(pipe, bundle):
    info = [sys.executable, "-m", "discomkd", "info", "--json", str(bundle)]
    if pipe == "head":
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", " ".join(f"'{a}'" for a in info) + " | head -1"],
                              capture_output=True, text=True, env=ENV, timeout=120)
        assert proc.stdout == "{\n"
    else:
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            proc = subprocess.run(info, stdout=write_end, stderr=subprocess.PIPE, text=True, env=ENV, timeout=120)
        finally:
            os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # nothing at all, not even "Exception ignored ... BrokenPipeError"
