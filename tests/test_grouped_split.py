"""Splits that hold out whole groups of files (speakers, subjects, sessions), read from file names
with a regular expression: no group in two parts, pairs kept together, stratified where the groups
allow, clear messages for names the pattern misses and for too few groups; recorded in run.json,
the model bundle and the CLI's start."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from discomkd.config import ModalitySource, TrainingConfig, pattern_problem
from discomkd.data.dataset import ModalityData, combine_modalities
from discomkd.data.grouping import file_groups, name_below_class
from discomkd.data.spec import ModalitySpec
from discomkd.data.split import PARTS, split_dataset
from discomkd.errors import ConfigError, DataError
from discomkd.options import parse_modality_arg

SPEAKER = r"_([a-z]+)_"


def modality(name: str, files: list[str], classes: list[str] | None = None) -> ModalityData:
    """An in-memory modality: ``files`` are 'class/name.ext' (no data needed to split)."""
    classes = classes or sorted({f.split("/")[0] for f in files})
    labels = np.asarray([classes.index(f.split("/")[0]) for f in files], dtype=np.int64)
    spec = ModalitySpec(name, "image", 1, (2, 2))
    return ModalityData(name, f"/{name}", spec, classes, np.zeros((len(files), 1, 2, 2), np.float32), labels, files)


def speaker_files(speakers: list[str], classes: int = 4, per: int = 5, ext: str = "wav") -> list[str]:
    return [f"{c}/{c}_{s}_{k}.{ext}" for s in speakers for c in range(classes) for k in range(per)]


def groups_of(m: ModalityData, rows: np.ndarray) -> set[str]:
    return {m.files[i].split("_")[1] for i in rows}


SIX = ["alice", "bob", "carol", "dave", "erin", "frank"]


def test_validation_and_test_hold_out_whole_speakers_stratified_and_seeded():
    audio = modality("audio", speaker_files(SIX))
    image = modality("image", [f"{c}/{k}.png" for c in range(4) for k in range(30)])
    dataset = combine_modalities([image, audio])
    splits = split_dataset(dataset, (0.6, 0.2, 0.2), seed=1, group_patterns={"audio": SPEAKER})
    s = splits["audio"]
    held = [groups_of(audio, getattr(s, p)) for p in PARTS]
    assert all(held) and not (held[0] & held[1] or held[0] & held[2] or held[1] & held[2])
    assert [len(g) for g in held] == [4, 1, 1]
    assert s.groups == {p: sorted(g) for p, g in zip(PARTS, held)}
    for p in PARTS:  # every speaker said every digit: each part is stratified
        assert np.bincount(audio.labels[getattr(s, p)], minlength=4).tolist() == [len(getattr(s, p)) // 4] * 4
    record = s.group_record()
    assert record["pattern"] == SPEAKER and record["files"] == {"train": 80, "val": 20, "test": 20}
    again = split_dataset(dataset, (0.6, 0.2, 0.2), seed=1, group_patterns={"audio": SPEAKER})["audio"]
    assert again.groups == s.groups
    assert len({tuple(split_dataset(dataset, (0.6, 0.2, 0.2), seed=k, group_patterns={"audio": SPEAKER})["audio"]
                      .groups["test"]) for k in range(8)}) > 1
    # the modality without a pattern is split by class exactly as without grouping
    plain = split_dataset(dataset, (0.6, 0.2, 0.2), seed=1)
    np.testing.assert_array_equal(splits["image"].test, plain["image"].test)
    assert splits["image"].groups is None and splits["image"].group_record() is None


def test_groups_that_hold_some_classes_only_are_placed_to_keep_every_class_in_every_part():
    # 12 sessions, each recording two of four classes: the split still has every class in every part
    files = [f"{c}/s{g:02d}-{c}-{k}.png" for g in range(12) for c in (g % 4, (g + 1) % 4) for k in range(3)]
    m = modality("cam", files)
    other = modality("other", [f"{c}/{k}.png" for c in range(4) for k in range(10)])
    for seed in range(5):
        s = split_dataset(combine_modalities([m, other]), (0.5, 0.25, 0.25), seed, {"cam": r"^(s\d+)-"})["cam"]
        for p in PARTS:
            assert set(m.labels[getattr(s, p)].tolist()) == {0, 1, 2, 3}, (seed, p)
        assert not s.warnings


def test_a_pattern_that_misses_files_names_them_and_says_what_to_do():
    files = speaker_files(SIX[:3]) + ["2/2_theo.wav", "3/noise.wav"]
    with pytest.raises(DataError) as err:
        file_groups(files, SPEAKER, "audio")
    text = str(err.value)
    assert "2 of 62" in text and "2/2_theo.wav" in text and "3/noise.wav" in text
    assert ":group=REGEX" in text and ":group=none" in text
    dataset = combine_modalities([modality("audio", files), modality("image", [f"{c}/{k}.png" for c in range(4)
                                                                              for k in range(3)])])
    with pytest.raises(DataError, match="finds no group in 2 of 62"):
        split_dataset(dataset, (0.6, 0.2, 0.2), 0, {"audio": SPEAKER})
    # the pattern reads the path below the class folder, so '^' anchors at the file name
    assert name_below_class("0/0_george_1.wav") == "0_george_1.wav"
    assert file_groups(["7/7_lucas_3.wav", "7/sub/7_x_1.wav"], r"^(?:sub/)?\d+_([a-z]+)_", "a") == ["lucas", "x"]


def test_too_few_groups_for_the_parts_is_refused_with_a_way_out():
    image = modality("image", [f"{c}/{k}.png" for c in range(4) for k in range(10)])
    dataset = combine_modalities([image, modality("audio", speaker_files(["ann", "ben"]))])
    with pytest.raises(DataError) as err:
        split_dataset(dataset, (0.7, 0.1, 0.2), 0, {"audio": SPEAKER})
    text = str(err.value)
    assert "2 group(s)" in text and "ann, ben" in text and "at least 3" in text and "--split 0.8,0.2,0" in text
    s = split_dataset(dataset, (0.8, 0.2, 0.0), 0, {"audio": SPEAKER})["audio"]
    assert len(s.groups["train"]) == len(s.groups["val"]) == 1 and s.groups["test"] == [] and len(s.test) == 0


def test_paired_files_stay_together_and_groups_tied_by_pairs_are_one_group():
    # the same recordings in two modalities; 'a' reads the speaker, 'b' the session (two per
    # speaker); one recording of ann is filed under a session of ben's, so ann and ben must share a part
    speakers = ("ann", "ben", "cid", "dan", "eve", "fay")
    stems = [f"{s}_{c}_{10 * i + j}" for i, s in enumerate(speakers) for c in range(3) for j in range(2)]
    stems.append("ann_0_10")
    a = modality("a", [f"{s.split('_')[1]}/{s}.png" for s in stems])
    b = modality("b", [f"{s.split('_')[1]}/{s}.wav" for s in stems])
    dataset = combine_modalities([a, b])
    assert dataset.report.pairing.status == "paired"
    for seed in range(6):
        splits = split_dataset(dataset, (0.6, 0.2, 0.2), seed, {"a": r"^([a-z]+)_", "b": r"_\d+_(\d+)\."})
        for p in PARTS:
            assert sorted(Path(a.files[i]).stem for i in getattr(splits["a"], p)) == \
                   sorted(Path(b.files[i]).stem for i in getattr(splits["b"], p))
        named = [set(splits["a"].groups[p]) for p in PARTS]
        sessions = [set(splits["b"].groups[p]) for p in PARTS]
        for i in range(3):
            for j in range(i + 1, 3):
                assert not named[i] & named[j] and not sessions[i] & sessions[j]
        assert all(named), seed
        where = next(p for p in PARTS if "ann" in splits["a"].groups[p])
        assert "ben" in splits["a"].groups[where] and "10" in splits["b"].groups[where]


def test_a_group_name_in_two_unpaired_modalities_goes_to_the_same_part():
    video = modality("video", [f"{c}/{c}_{s}_{k}.png" for s in SIX for c in range(4) for k in range(2)])
    audio = modality("audio", speaker_files(SIX))
    for seed in range(4):
        splits = split_dataset(combine_modalities([video, audio]), (0.6, 0.2, 0.2), seed,
                               {"video": SPEAKER, "audio": SPEAKER})
        assert splits["video"].groups == splits["audio"].groups


def test_patterns_are_checked_in_the_config_and_on_the_command_line():
    assert "no capture group" in pattern_problem("_[a-z]+_")
    assert "not a regular expression" in pattern_problem("_([a-z]+_")
    assert pattern_problem("") == pattern_problem("none") == ""
    with pytest.raises(ConfigError, match="group pattern of the modality 'audio'.*no capture group"):
        TrainingConfig(modalities=[ModalitySource("audio", "x", group="_[a-z]+_")]).validate()
    with pytest.raises(ConfigError, match="not a regular expression"):
        TrainingConfig(group_by="(").validate()
    source = parse_modality_arg(r"audio=data/a:augmentation=none:group=^(?:\d+)_([a-z]+):x")
    assert source.group == r"^(?:\d+)_([a-z]+):x" and source.overrides == {"augmentation": "none"}
    assert parse_modality_arg("image=data/i:group=none").group == "none"
    assert parse_modality_arg("image=data/i").group == ""
    with pytest.raises(argparse.ArgumentTypeError, match="put ':group=' last"):
        parse_modality_arg(r"audio=a:group=_([a-z]+)_:augmentation=none")
    with pytest.raises(argparse.ArgumentTypeError, match="no capture group"):
        parse_modality_arg(r"audio=a:group=_[a-z]+_")
    with pytest.raises(argparse.ArgumentTypeError, match="empty"):
        parse_modality_arg("audio=a:group=")
    # saved runs keep the patterns, and older runs (without them) still load
    config = TrainingConfig(modalities=[ModalitySource("audio", "a", group=SPEAKER)], group_by=r"^(s\d+)")
    again = TrainingConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again.group_by == r"^(s\d+)" and again.modalities[0].group == SPEAKER
    old = config.to_dict()
    del old["group_by"], old["modalities"][0]["group"]
    assert TrainingConfig.from_dict(old).group_by == "" and TrainingConfig.from_dict(old).modalities[0].group == ""


def write_speakers(root: Path, speakers: list[str], per: int = 2, classes: int = 3) -> None:
    """Tiny .npy images named like FSDD recordings: {class}_{speaker}_{n}.npy."""
    rng = np.random.default_rng(len(speakers))
    for c in range(classes):
        (root / str(c)).mkdir(parents=True, exist_ok=True)
        for s in speakers:
            for k in range(per):
                x = rng.normal(0, 0.5, (1, 8, 8)).astype(np.float32)
                x[:, 2 * c: 2 * c + 2] += 2.0
                np.save(root / str(c) / f"{c}_{s}_{k}.npy", x)


@pytest.fixture
def speaker_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("DISCOMKD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DISCOMKD_DATA_DIR", str(tmp_path / "data"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    write_speakers(tmp_path / "audio", ["ann", "ben", "cid", "dan"])
    write_speakers(tmp_path / "image", ["x"], per=8)
    yield tmp_path
    torch.set_num_threads(before)


def test_train_records_the_held_out_groups_in_run_json_the_bundle_and_the_start(speaker_folders, capsys):
    from discomkd.cli import main
    from discomkd.model.bundle import load_bundle

    tmp = speaker_folders
    code = main(["train", "--modality", f"image={tmp / 'image'}", "--modality", rf"audio={tmp / 'audio'}:group=_([a-z]+)_",
                 "--epochs", "1", "--batch-size", "4", "--embed-dim", "4", "--device", "cpu", "--split", "0.5,0.25,0.25",
                 "--out", str(tmp / "run")])
    out = capsys.readouterr().out
    assert code == 0, out
    record = json.loads((tmp / "run" / "run.json").read_text())
    grouping = record["data"]["split_groups"]
    assert list(grouping) == ["audio"]
    held = grouping["audio"]["groups"]
    assert len(held["train"]) == 2 and len(held["val"]) == 1 and len(held["test"]) == 1
    assert not set(held["train"]) & set(held["val"] + held["test"])
    assert grouping["audio"]["files"] == {"train": 12, "val": 6, "test": 6}
    assert record["config"]["modalities"][1]["group"] == "_([a-z]+)_"
    assert f"audio: whole groups held out (pattern '_([a-z]+)_'): training {', '.join(held['train'])} (12 files)" in out
    assert f"validation {held['val'][0]} (6 files)" in out
    bundle = load_bundle(tmp / "run" / "model.discomkd")
    assert bundle.metadata["training"]["split_groups"] == grouping
    assert any(line.startswith("split: audio: whole groups held out") for line in bundle.summary_lines())
    # the run's test files are exactly the held-out speaker's
    predictions = json.loads((tmp / "run" / "test_predictions.json").read_text())
    test_files = predictions["modalities"]["audio"]["files"]
    assert len(test_files) == 6 and all(f"_{held['test'][0]}_" in f for f in test_files)
    # continuing (here: refitting the calibration only) splits the same way
    assert main(["continue", str(tmp / "run"), "--epochs", "0"]) == 0
    capsys.readouterr()
    assert json.loads((tmp / "run" / "run.json").read_text())["data"]["split_groups"] == grouping


def test_train_refuses_a_pattern_that_misses_files_or_too_few_groups_before_any_epoch(speaker_folders, capsys):
    from discomkd.cli import main

    tmp = speaker_folders
    stray = tmp / "audio" / "1" / "stray.npy"
    np.save(stray, np.zeros((1, 8, 8), np.float32))
    common = ["--epochs", "1", "--device", "cpu", "--group-by", "_([a-z]+)_"]
    code = main(["train", "--modality", f"image={tmp / 'image'}:group=none", "--modality", f"audio={tmp / 'audio'}",
                 *common, "--out", str(tmp / "run")])
    err = capsys.readouterr().err
    assert code != 0
    assert "finds no group in 1 of 25 file(s) of the modality 'audio': 1/stray.npy" in err and ":group=none" in err
    assert not (tmp / "run" / "model.discomkd").exists()
    stray.unlink()
    # the shared pattern also reads the image files (all named like speaker 'x'): one group is too few
    code = main(["train", "--modality", f"image={tmp / 'image'}", "--modality", f"audio={tmp / 'audio'}",
                 *common, "--out", str(tmp / "run2")])
    err = capsys.readouterr().err
    assert code != 0 and "'image' (pattern '_([a-z]+)_': x) has 1 group(s)" in err and "at least 3" in err
