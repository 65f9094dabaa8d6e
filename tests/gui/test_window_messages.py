"""Messages of the main window: the real PyTorch import error is shown, status messages do not go stale."""

from __future__ import annotations


def test_a_pytorch_import_failure_shows_the_import_error(window, qtbot, monkeypatch):
    def broken_torch(state):
        raise ImportError("libtorch_cpu.so: cannot open shared object file: No such file or directory")

    monkeypatch.setattr("discomkd_gui.main_window.probe_devices", broken_torch)
    window.start_background_setup()
    qtbot.waitUntil(lambda: bool(window.error_boxes), timeout=10000)
    box = window.error_boxes[-1]
    assert "PyTorch could not be loaded" in box.text() and "libtorch_cpu.so: cannot open shared object" in box.text()
    assert "Traceback" in box.detailedText() and "broken_torch" in box.detailedText()
    assert "libtorch_cpu.so" in window.device_label.text()


def test_status_messages_clear_on_page_change_and_training_state_stays_apart(window):
    bar = window.statusBar()
    window.show_page("Data")
    window.show_error("The folder cannot be read.\nMore details.")
    assert bar.currentMessage() == "The folder cannot be read."
    window.show_page("Runs")
    assert bar.currentMessage() == ""  # the message was about the page left

    window._training_active(True)
    assert window.activity.text().startswith("Training")
    bar.showMessage("Finished 3 epochs. image accuracy 0.900", 15000)
    window._training_active(False)  # the end of a training no longer overwrites its result with "Ready."
    assert window.activity.text() == "" and bar.currentMessage().startswith("Finished 3 epochs")
