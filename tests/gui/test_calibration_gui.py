"""Calibration in the window: a reliability diagram per modality on the Results page, uncertain
answers flagged on the Predict page (cards, table, CSV) at the model's or the user's threshold."""

from __future__ import annotations

import csv
from pathlib import Path

from test_main_window import drop_files


def test_results_page_draws_the_bundles_reliability_bins_per_modality(window, trained_bundle, qtbot):
    from discomkd.model.bundle import load_bundle

    bundle = load_bundle(trained_bundle)
    with qtbot.waitSignal(window.predict_page.model_loaded, timeout=30000):
        window.open_model(str(trained_bundle))
    results = window.results_page
    assert set(results.reliability_diagrams) == {"image", "audio"}
    for modality, diagram in results.reliability_diagrams.items():
        bins = bundle.test_metrics[modality]["reliability"]["calibrated"]
        assert diagram.bar_heights() == [b["accuracy"] for b in bins if b["count"]]
        assert f"{bundle.test_metrics[modality]['ece']:.3f}" in diagram.getPlotItem().titleLabel.text
    assert results.calibration_note.text() == ""


def test_predict_page_flags_uncertain_answers_at_the_threshold_the_user_sets(window, trained_bundle, held_out_files,
                                                                             qtbot, tmp_path):
    page = window.predict_page
    with qtbot.waitSignal(page.model_loaded, timeout=30000):
        window.open_model(str(trained_bundle))
    assert "calibrated on the validation split" in page.model_label.text()
    with qtbot.waitSignal(page.predictions_ready, timeout=30000) as ready:
        drop_files(page.drop_zone, [held_out_files["image"], held_out_files["audio"]])
    items = ready.args[0]
    # The model's default: each modality's own threshold from its validation split.
    assert page.uncertain_threshold() is None
    for card, item in zip(page.cards, items):
        assert card.uncertain == item.result.uncertain
        assert ("uncertain" in card.label.text()) == item.result.uncertain

    page.uncertain_below.setValue(100)  # everything below 100% is uncertain
    assert all(card.uncertain and "⚠ uncertain" in card.label.text() for card in page.cards)
    assert [page.table.item(r, 4).text() for r in range(page.table.rowCount())] == ["uncertain", "uncertain"]
    rows = list(csv.DictReader(Path(page.export_csv(str(tmp_path / "all.csv"))).open()))
    assert [r["uncertain"] for r in rows] == ["yes", "yes"]

    page.uncertain_below.setValue(1)  # (almost) nothing is uncertain
    assert not any(card.uncertain for card in page.cards)
    assert [page.table.item(r, 4).text() for r in range(page.table.rowCount())] == ["", ""]


def test_exporting_a_model_from_before_calibration_says_its_probabilities_are_not_calibrated(
        window, trained_bundle, qtbot, tmp_path):
    import json

    from discomkd.model.bundle import load_bundle, save_bundle

    bundle = load_bundle(trained_bundle)
    metadata = json.loads(json.dumps(bundle.metadata))
    for info in metadata["modalities"].values():
        del info["calibration"]
    old = save_bundle(tmp_path / "old.discomkd", metadata, bundle.weights)
    for path, calibrated in ((trained_bundle, True), (old, False)):
        window.export_boxes.clear()
        window.run_export(str(path), "image", "torchscript", str(tmp_path / f"{path.stem}.pt"))
        qtbot.waitUntil(lambda: bool(window.export_boxes or window.error_boxes), timeout=60000)
        assert not window.error_boxes, window.error_boxes[0].text()
        assert ("NOT calibrated" in window.export_boxes[-1].text()) == (not calibrated)
