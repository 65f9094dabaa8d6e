"""Folder scanning and decoding on copies of the real data, with broken and stray files added."""

from __future__ import annotations

import wave

import numpy as np
import pytest
from PIL import Image

from support import copy_subset, shared_data
from discomkd.data.dataset import combine_modalities
from discomkd.data.load import load_modality
from discomkd.data.split import split_dataset, stratified_split
from discomkd.errors import DataError


def test_scan_skips_broken_and_stray_files_with_reasons(tmp_path):
    folder = copy_subset(shared_data("av-digits", "image"), tmp_path / "image", 5, ["0", "1", "2"])
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "1" / "Thumbs.db").write_bytes(b"junk")
    (folder / "1" / "empty.png").write_bytes(b"")
    (folder / "2" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (folder / "2" / "notes.txt").write_text("hello")
    (folder / "loose.png").write_bytes((folder / "0" / sorted((folder / "0").iterdir())[0].name).read_bytes())
    Image.new("RGB", (28, 28), "red").save(folder / "0" / "colour.png")  # wrong channel count

    data = load_modality(folder, "image")

    assert data.classes == ["0", "1", "2"]
    assert data.x.shape == (15, 1, 28, 28)
    reasons = {s.path: s.reason for s in data.skipped}
    assert reasons[".DS_Store"] == "system file, not data"
    assert reasons["1/Thumbs.db"] == "system file, not data"
    assert "0 bytes" in reasons["1/empty.png"]
    assert "unreadable image" in reasons["2/broken.png"]
    assert "unsupported file type" in reasons["2/notes.txt"]
    assert reasons["loose.png"] == "not inside a class folder"
    assert "3 channel(s)" in reasons["0/colour.png"]


def test_decoded_arrays_are_cached_and_reused(tmp_path):
    folder = copy_subset(shared_data("av-digits", "image"), tmp_path / "image", 4, ["0", "1"])
    first = load_modality(folder, "image")
    second = load_modality(folder, "image")
    assert not first.from_cache and second.from_cache
    np.testing.assert_array_equal(first.x, second.x)
    (folder / "1" / "extra.png").write_bytes((folder / "1" / first.files[-1].split("/")[-1]).read_bytes())
    assert not load_modality(folder, "image").from_cache  # changed folder, new cache entry


def test_reads_13_band_tiff_and_selects_bands(tmp_path):
    folder = copy_subset(shared_data("eurosat-ms"), tmp_path / "ms", 3, ["Forest", "River", "SeaLake"])
    full = load_modality(folder, "ms")
    assert full.spec.channels == 13 and full.x.shape == (9, 13, 64, 64)
    assert full.spec.augmentation == "flips_rot90"  # overhead imagery
    rgb = load_modality(folder, "rgb", {"bands": (3, 2, 1)})
    assert rgb.x.shape == (9, 3, 64, 64)
    np.testing.assert_array_equal(rgb.x[:, 0], full.x[:, 3])
    assert float(full.x.max()) <= 1.0 and float(full.x.max()) > 0  # uint16 scaled to [0, 1]
    with pytest.raises(DataError, match="Band selection"):
        load_modality(folder, "bad", {"bands": (20,)})


def test_reads_16_bit_png(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "depth" / cls).mkdir(parents=True)
        for i in range(3):
            values = np.full((20, 24), 1000 * (i + 1) + (30000 if cls == "b" else 0), dtype=np.uint16)
            Image.fromarray(values).save(tmp_path / "depth" / cls / f"{i}.png")
    data = load_modality(tmp_path / "depth", "depth")
    assert data.spec.channels == 1 and data.spec.size == (20, 24)
    np.testing.assert_allclose(data.x[0, 0, 0, 0], 1000 / 65535, rtol=1e-5)
    assert data.x[data.labels == 1].min() > 30000 / 65535


def test_npy_signals_of_different_lengths_get_one_length(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("walk", "run"):
        (tmp_path / "imu" / cls).mkdir(parents=True)
        for i, length in enumerate((90, 100, 100, 120)):
            np.save(tmp_path / "imu" / cls / f"{i}.npy", rng.normal(size=(6, length)).astype(np.float32))
    data = load_modality(tmp_path / "imu", "imu")
    assert data.spec.kind == "signal" and data.spec.channels == 6
    assert data.spec.length == 100 and data.x.shape == (8, 6, 100)
    cropped = load_modality(tmp_path / "imu", "imu", {"length_mode": "crop", "length": 80})
    assert cropped.x.shape == (8, 6, 80)


def test_npy_images_are_channels_first(tmp_path):
    for cls in ("x", "y"):
        (tmp_path / "thermal" / cls).mkdir(parents=True)
        for i in range(2):
            np.save(tmp_path / "thermal" / cls / f"{i}.npy", np.ones((32, 32), dtype=np.float32) * i)
    data = load_modality(tmp_path / "thermal", "thermal")
    assert data.spec.kind == "image" and data.x.shape == (4, 1, 32, 32)


def _write_wav(path, samples: np.ndarray, rate: int, width: int, channels: int) -> None:
    ints = (samples * (2 ** (8 * width - 1) - 1)).astype(np.int64)
    if channels == 2:
        ints = np.repeat(ints, 2)
    raw = b"".join(int(v).to_bytes(width, "little", signed=True) for v in ints)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


def test_wav_real_and_stereo_24bit_become_the_same_spectrogram_shape(tmp_path):
    folder = copy_subset(shared_data("av-digits", "audio"), tmp_path / "audio", 3, ["4", "7"])
    t = np.arange(11025) / 22050.0
    _write_wav(folder / "4" / "stereo24.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 22050, 3, 2)
    data = load_modality(folder, "audio")
    assert data.spec.kind == "audio"
    assert data.x.shape == (7, 1, *data.spec.spectrogram.shape) == (7, 1, 129, 61)
    assert not data.skipped
    stereo = data.x[data.files.index("4/stereo24.wav"), 0]
    assert stereo[:, 5].argmax() in (13, 14, 15)  # 440 Hz at 8 kHz / 256-point FFT is bin 14


def test_missing_class_is_reported_not_fatal(tmp_path):
    images = copy_subset(shared_data("av-digits", "image"), tmp_path / "image", 3, ["0", "1", "2"])
    audio = copy_subset(shared_data("av-digits", "audio"), tmp_path / "audio", 3, ["0", "1"])
    dataset = combine_modalities([load_modality(images, "image"), load_modality(audio, "audio")])
    assert dataset.classes == ["0", "1", "2"]
    assert dataset.report.missing == {"image": [], "audio": ["2"]}
    assert dataset.report.pairing.status == "unpaired"


def test_clear_errors_before_training(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_modality(tmp_path / "nowhere", "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no usable file"):
        load_modality(tmp_path / "empty", "x")
    one = copy_subset(shared_data("av-digits", "image"), tmp_path / "one", 3, ["5"])
    with pytest.raises(DataError, match="at least two class"):
        load_modality(one, "one")
    a = load_modality(copy_subset(shared_data("av-digits", "image"), tmp_path / "a", 2, ["0", "1"]), "a")
    b = load_modality(copy_subset(shared_data("av-digits", "image"), tmp_path / "b", 2, ["2", "3"]), "b")
    with pytest.raises(DataError, match="shares no class"):
        combine_modalities([a, b])


def test_stratified_split_keeps_class_proportions_and_is_seeded():
    labels = np.repeat(np.arange(4), 50)
    split = stratified_split(labels, (0.7, 0.1, 0.2), seed=3)
    assert (len(split.train), len(split.val), len(split.test)) == (140, 20, 40)
    assert np.bincount(labels[split.test]).tolist() == [10, 10, 10, 10]
    assert not set(split.train) & set(split.test)
    again = stratified_split(labels, (0.7, 0.1, 0.2), seed=3)
    np.testing.assert_array_equal(split.test, again.test)


def test_paired_modalities_are_detected_and_split_together(tmp_path):
    folder = copy_subset(shared_data("eurosat-ms"), tmp_path / "ms", 10, ["Forest", "River"])
    rgb = load_modality(folder, "rgb", {"bands": (3, 2, 1)})
    ir = load_modality(folder, "ir", {"bands": (7, 8, 11, 12)})
    dataset = combine_modalities([rgb, ir])
    assert dataset.report.pairing.status == "paired"
    splits = split_dataset(dataset, (0.6, 0.2, 0.2), seed=0)
    assert [rgb.files[i] for i in splits["rgb"].test] == [ir.files[i] for i in splits["ir"].test]


def test_data_too_large_for_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    import discomkd.data.load as data_module

    folder = copy_subset(shared_data("av-digits", "image"), tmp_path / "image", 3, ["0", "1"])
    monkeypatch.setattr(data_module, "_available_memory", lambda: 10_000)
    with pytest.raises(DataError, match="GiB of memory is free"):
        load_modality(folder, "image", {"size": (512, 512)})


def test_npy_arrays_read_as_numpy_reads_them_and_damaged_ones_are_refused(tmp_path):
    """The .npy reader parses each header once; it must still read what numpy writes (Fortran order,
    big-endian, integers, 2-D signals) exactly as numpy.load does, and refuse pickled, structured or
    cut-short files with a reason."""
    from discomkd.data.decoding import read_npy

    rng = np.random.default_rng(0)
    arrays = {
        "fortran": np.asfortranarray(rng.normal(size=(3, 8, 9)).astype(np.float32)),
        "big_endian": rng.normal(size=(1, 6, 7)).astype(">f8"),
        "uint8": rng.integers(0, 255, size=(4, 5), dtype=np.uint8),
        "signal": rng.normal(size=(3, 64)).astype(np.float32),
    }
    for name, array in arrays.items():
        np.save(tmp_path / f"{name}.npy", array)
        kind, ours = read_npy(tmp_path / f"{name}.npy")
        expected = np.load(tmp_path / f"{name}.npy")
        expected = expected / np.float32(255) if expected.dtype == np.uint8 else expected.astype(np.float32)
        assert kind == ("signal" if name == "signal" else "image")
        assert ours.dtype == np.float32 and np.allclose(ours.reshape(expected.shape), expected, rtol=0, atol=1e-7), name

    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "structured.npy", np.zeros(3, dtype=[("x", "f4"), ("y", "i4")]))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "fortran.npy").read_bytes()[:-40])
    reasons = {}
    for name in ("objects", "structured", "cut"):
        with pytest.raises(DataError) as info:
            read_npy(tmp_path / f"{name}.npy")
        reasons[name] = str(info.value)
    assert "not numeric" in reasons["objects"] and "not numeric" in reasons["structured"]
    assert "cut short" in reasons["cut"]
