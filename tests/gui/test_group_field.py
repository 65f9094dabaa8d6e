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


@pytest.mark.parametrize("box, default", [("agree_with_unlabelled", False), ("teacher_self_training", True)])
def test_the_boxes_for_recordings_reach_the_config_and_are_saved(qtbot, box, default):
    from discomkd_gui.pages.configure_page import ConfigurePage

    page = ConfigurePage()
    qtbot.addWidget(page)
    assert getattr(page, box).isChecked() is default
    assert getattr(page.config([("image", "/i"), ("audio", "/a")]), box) is default
    getattr(page, box).setChecked(not default)
    saved = page.values()
    assert getattr(page.config([("image", "/i"), ("audio", "/a")]), box) is (not default)
    again = ConfigurePage()
    qtbot.addWidget(again)
    again.set_values(saved)
    assert getattr(again, box).isChecked() is (not default)
    again.set_values({"epochs": 5})  # settings saved before the box: today's default
    assert getattr(again, box).isChecked() is default
