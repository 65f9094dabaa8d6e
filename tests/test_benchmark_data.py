"""The benchmark data builder (scripts/make_benchmark_data.py) and a tiny paired comparison on its output."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
from PIL import Image

from support import REPO, shared_data


def _builder():
    spec = importlib.util.spec_from_file_location("make_benchmark_data", REPO / "scripts" / "make_benchmark_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_builder_pairs_a_weak_sensor_with_the_strong_one(tmp_path):
    shared = shared_data()
    assert _builder().main([str(tmp_path), "--per-class", "3", "--shared", str(shared)]) == 0
    strong = sorted((tmp_path / "paired-digits" / "strong").rglob("*.png"))
    weak = sorted((tmp_path / "paired-digits" / "weak").rglob("*.png"))
    assert len(strong) == len(weak) == 30
    assert [p.relative_to(p.parents[1]) for p in strong] == [p.relative_to(p.parents[1]) for p in weak]
    with Image.open(strong[0]) as s, Image.open(weak[0]) as w:
        assert s.size == (28, 28) and w.size == (7, 7) and w.mode == "L"
    again = tmp_path / "again"
    _builder().main([str(again), "--per-class", "3", "--shared", str(shared)])
    with Image.open(weak[0]) as a, Image.open(again / weak[0].relative_to(tmp_path)) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))  # the sensor noise is seeded per file
    # 2 of the 3 digits per class keep their label, 1 goes to _unlabelled, in both sensors
    for sensor in ("strong", "weak"):
        root = tmp_path / "paired-digits-unlabelled" / sensor
        assert len(list((root / "_unlabelled").glob("*.png"))) == 10
        assert sum(1 for p in root.rglob("*.png") if p.parent.name != "_unlabelled") == 20
    assert (sorted(p.name for p in (tmp_path / "paired-digits-unlabelled" / "strong" / "_unlabelled").iterdir())
            == sorted(p.name for p in (tmp_path / "paired-digits-unlabelled" / "weak" / "_unlabelled").iterdir()))
    rgb = sorted((tmp_path / "eurosat-split" / "rgb").rglob("*.npy"))
    ir = sorted((tmp_path / "eurosat-split" / "ir").rglob("*.npy"))
    assert len(rgb) == len(ir) == 200
    assert np.load(rgb[0]).shape == (3, 64, 64) and np.load(ir[0]).shape == (4, 64, 64)


def test_tiny_paired_comparison_reports_differences_and_verdicts(tmp_path):
    from discomkd.config import ModalitySource, TrainingConfig
    from discomkd.training.compare import read_comparison, run_comparison

    _builder().main([str(tmp_path / "data"), "--per-class", "8", "--shared", str(shared_data())])
    root = tmp_path / "data" / "paired-digits"
    config = TrainingConfig(modalities=[ModalitySource("strong", str(root / "strong")),
                                        ModalitySource("weak", str(root / "weak"))],
                            epochs=2, batch_size=16, embed_dim=8, device="cpu", split=(0.5, 0.25, 0.25))
    result = run_comparison(config, ["discomkd", "student", "classifiers_only"], seeds=2, out_dir=tmp_path / "out")
    assert result.settings["pairing"].startswith("paired")
    rows = {(r["method"], r["modality"]): r for r in result.rows}
    for modality in ("strong", "weak"):
        row = rows[("discomkd", modality)]
        assert row["diff_seeds"] == 2 and row["diff_ci_low"] <= row["diff_mean"] <= row["diff_ci_high"]
        assert row["verdict"] in ("helps", "hurts", "no evidence")
        # the control is the student alone, seed for seed
        assert rows[("classifiers_only", modality)]["diff_mean"] == 0.0
    assert result.verdict_lines()[0].startswith("DisCoM-KD vs student alone: strong: ")
    assert "compare at convergence" in result.to_markdown()  # two epochs: the check warns
    payload = json.loads((tmp_path / "out" / "per_run.json").read_text())
    assert payload["format_version"] == 3
    assert read_comparison(tmp_path / "out").rows == result.rows


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paired_reading_pairs_methods_across_folders_by_seed(tmp_path, capsys):
    def write(folder, method, scores, status="finished"):
        runs = [{"method": method, "seed": seed, "status": status, "reason": "",
                 "metrics": {"weak": {"weighted_f1": f1, "best_epoch": 10, "val_curve": [f1] * 10}}}
                for seed, f1 in scores.items()]
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "per_run.json").write_text(json.dumps({"runs": runs}))

    write("new", "discomkd", {1: 0.62, 2: 0.60, 3: 0.63, 4: 0.59})
    write("old", "self_training", {2: 0.57, 3: 0.58, 4: 0.56, 5: 0.99})  # seed 5 has no partner: left out
    _module("paired_reading").main([str(tmp_path / "new"), f"{tmp_path / 'old'}:self_training"])
    out = capsys.readouterr().out
    assert "new:discomkd - old:self_training weak: n=3 0.6067 vs 0.5700: +3.7" in out
    assert "3 of 3 seeds higher" in out
    # The same runs on both sides (an unchanged modality): no Wilcoxon p, and the reading still prints.
    _module("paired_reading").main([str(tmp_path / "new"), str(tmp_path / "new")])
    assert "+0.0 (+0.0 to +0.0; Wilcoxon p n/a), 0 of 4 seeds higher" in capsys.readouterr().out


def test_the_distillation_benchmark_refuses_a_wrong_config_with_a_message(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("distillation", REPO / "benchmarks" / "distillation.py")
    distillation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(distillation)
    for wrong, said in [('{"epoch": 3}', "unexpected keyword argument 'epoch'"), ('{"weights": {"zz": 1}}', "'zz'"),
                        ("{bad", "Expecting property name"), ('{"epochs": 0}', "at least one epoch")]:
        try:
            distillation.main(["av-digits", "--seeds", "1", "--config", wrong, "--out", str(tmp_path / "out")])
        except SystemExit as exc:
            assert exc.code == 2
        else:
            raise AssertionError(f"--config {wrong} was accepted")
        assert said in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written
