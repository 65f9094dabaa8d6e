"""The command line on real digits: train, predict, evaluate, info, errors without tracebacks."""

from __future__ import annotations


import pytest

from discomkd.cli import main, parse_modality_arg


def test_modality_argument_parsing():
    source = parse_modality_arg("rgb=/data/eurosat:bands=4,3,2:augmentation=flips_rot90")
    assert source.name == "rgb" and source.folder == "/data/eurosat"
    assert source.overrides == {"bands": [3, 2, 1], "augmentation": "flips_rot90"}
    assert parse_modality_arg("depth=C:/data/depth").folder == "C:/data/depth"


def test_train_then_predict_evaluate_and_info(tiny_demo, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["train", "--modality", f"image={tiny_demo['image']}", "--modality", f"audio={tiny_demo['audio']}",
                 "--out", str(run_dir), "--epochs", "2", "--embed-dim", "8", "--batch-size", "32", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "epoch 2/2" in out and "test accuracy" in out
    bundle = run_dir / "model.discomkd"
    assert bundle.exists() and (run_dir / "train.log").exists()

    png = sorted((tiny_demo["image"] / "4").iterdir())[0]
    wav = sorted((tiny_demo["audio"] / "3").iterdir())[0]
    assert main(["predict", str(bundle), str(png), str(wav), "--csv", str(tmp_path / "p.csv")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{png}\timage\t") and lines[1].startswith(f"{wav}\taudio\t")
    assert (tmp_path / "p.csv").exists()

    assert main(["evaluate", str(bundle), "--modality", f"image={tiny_demo['image']}"]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert main(["info", str(bundle)]) == 0
    assert "image: image, 1 channel, 28x28" in capsys.readouterr().out


def test_user_errors_print_a_message_not_a_traceback(tmp_path, capsys):
    not_a_model = tmp_path / "x.discomkd"
    not_a_model.write_text("hello")
    assert main(["info", str(not_a_model)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert main(["train", "--modality", f"a={tmp_path}", "--modality", f"b={tmp_path / 'nope'}", "--out", str(tmp_path / "r")]) == 1
    assert "error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--modality", "no-equals-sign"])


def test_a_run_trained_from_relative_folders_continues_from_anywhere(tiny_demo, tmp_path, capsys, monkeypatch):
    """Data folders given relative to the working folder are recorded absolute, so the run, its model
    and `continue` find the data from any other working folder."""
    import json

    monkeypatch.chdir(tiny_demo["image"].parent)
    run_dir = tmp_path / "run"
    assert main(["train", "--modality", f"image={tiny_demo['image'].name}", "--modality",
                 f"audio={tiny_demo['audio'].name}", "--out", str(run_dir), "--epochs", "1", "--embed-dim", "8",
                 "--batch-size", "32", "--device", "cpu"]) == 0
    folders = [m["folder"] for m in json.loads((run_dir / "run.json").read_text())["config"]["modalities"]]
    assert folders == [str(tiny_demo["image"]), str(tiny_demo["audio"])]
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["continue", str(run_dir), "--epochs", "1"]) == 0, capsys.readouterr().err
