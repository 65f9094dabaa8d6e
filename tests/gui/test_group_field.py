"""The Configure page's 'Group files by' field: a group pattern for the split, checked as typed,
saved with the settings and passed to the training configuration."""

from __future__ import annotations

import pytest

from discomkd.errors import ConfigError


def test_group_field_is_checked_saved_and_reaches_the_config(qtbot):
    from discomkd_gui.pages.configure_page import ConfigurePage

    page = ConfigurePage()
    qtbot.addWidget(page)
    assert page.group_by.text() == "" and page.values()["group_by"] == ""
    page.group_by.setText("_[a-z]+_")  # no capture group
    assert page.group_by.property("invalid") is True and "capture group" in page.group_by.statusTip()
    with pytest.raises(ConfigError, match="no capture group"):
        page.config([("image", "/i"), ("audio", "/a")])
    page.group_by.setText(" _([a-z]+)_ ")
    assert page.group_by.property("invalid") is False
    config = page.config([("image", "/i"), ("audio", "/a")])
    assert config.group_by == "_([a-z]+)_"
    saved = page.values()
    again = ConfigurePage()
    qtbot.addWidget(again)
    again.set_values(saved)
    assert again.group_by.text() == "_([a-z]+)_"
    again.set_values({})  # older settings without the field: no grouping
    assert again.group_by.text() == ""


def test_self_label_field_reaches_the_config_and_is_saved(qtbot):
    from discomkd_gui.pages.configure_page import ConfigurePage

    page = ConfigurePage()
    qtbot.addWidget(page)
    assert page.config([("image", "/i"), ("audio", "/a")]).self_label_threshold == 0.0  # off by default
    page.self_label_threshold.setValue(0.9)
    saved = page.values()
    assert page.config([("image", "/i"), ("audio", "/a")]).self_label_threshold == pytest.approx(0.9)
    again = ConfigurePage()
    qtbot.addWidget(again)
    again.set_values(saved)
    assert again.self_label_threshold.value() == pytest.approx(0.9)
    again.set_values({"epochs": 5})  # settings saved before the field: off
    assert again.self_label_threshold.value() == 0.0


def test_agreement_with_recordings_box_reaches_the_config_and_is_saved(qtbot):
    from discomkd_gui.pages.configure_page import ConfigurePage

    page = ConfigurePage()
    qtbot.addWidget(page)
    assert page.config([("image", "/i"), ("audio", "/a")]).agree_with_unlabelled is False  # off by default
    page.agree_with_unlabelled.setChecked(True)
    saved = page.values()
    assert page.config([("image", "/i"), ("audio", "/a")]).agree_with_unlabelled is True
    again = ConfigurePage()
    qtbot.addWidget(again)
    again.set_values(saved)
    assert again.agree_with_unlabelled.isChecked()
    again.set_values({"epochs": 5})  # settings saved before the box: today's default
    assert not again.agree_with_unlabelled.isChecked()


def test_teacher_self_training_box_is_on_by_default_reaches_the_config_and_is_saved(qtbot):
    from discomkd_gui.pages.configure_page import ConfigurePage

    page = ConfigurePage()
    qtbot.addWidget(page)
    assert page.teacher_self_training.isChecked()
    assert page.config([("image", "/i"), ("audio", "/a")]).teacher_self_training is True
    page.teacher_self_training.setChecked(False)
    saved = page.values()
    assert page.config([("image", "/i"), ("audio", "/a")]).teacher_self_training is False
    again = ConfigurePage()
    qtbot.addWidget(again)
    again.set_values(saved)
    assert not again.teacher_self_training.isChecked()
    again.set_values({"epochs": 5})  # settings saved before the box: today's default
    assert again.teacher_self_training.isChecked()
