"""Train page: Start/Stop, progress with ETA, live loss and validation curves, and a log.

The training runs in a :class:`~discomkd_gui.jobs.Job`; engine events arrive here as Qt signals.
Event slots only append numbers to arrays; a timer pushes them to the curves, so plotting never
slows the training down however fast batches end. The window must never stall either (every
repaint competes with the training thread for the GIL): each timer tick redraws at most one plot,
nothing is redrawn while the page is hidden, and the epoch axis is fixed for the run, so a new
point never re-lays out the axes (benchmarks/gui_stall.py measures the largest stall).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from discomkd.training.events import (BatchEnded, BestModelSaved, DataProgress, EpochEnded, RunEnded, RunStarted,
                                      StageProgress, TeachingChanged, TrainingEvent, send_event)

from ..jobs import Job, TaskState, start_job
from .common import StartStopHeader, fmt_duration

TERMS = ("cl", "aux", "adv", "mod", "perp", "agree", "unlabelled", "total")
TERM_COLOURS = {
    "cl": "#1f77b4", "aux": "#ff7f0e", "adv": "#d62728", "mod": "#2ca02c", "perp": "#9467bd", "agree": "#17becf",
    "unlabelled": "#8c564b", "total": "#222222",
}
MODALITY_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
PLOT_HZ = 10  # timer ticks per second; the two plots take turns, so each redraws at most 5 times a second
SMOOTHING = 0.9  # exponential moving average of per-batch losses
LOSS_TOOLTIP = ("Lines: each loss term per batch (smoothed); dots: epoch means. Terms are unweighted; the total is "
                "their weighted sum, as the optimiser sees it. Terms switched off, or without data, are not drawn.")


class Series:
    """A growing float64 (x, y) buffer; ``view()`` gives the filled part without copying."""

    def __init__(self) -> None:
        self._x = np.empty(256)
        self._y = np.empty(256)
        self.n = 0

    def append(self, x: float, y: float) -> None:
        if self.n == self._x.size:
            self._x = np.resize(self._x, 2 * self.n)
            self._y = np.resize(self._y, 2 * self.n)
        self._x[self.n] = x
        self._y[self.n] = y
        self.n += 1

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        return self._x[: self.n], self._y[: self.n]

    def push_to(self, curve: pg.PlotDataItem) -> None:
        """setData only when points were added or removed since the last push (redraws are costly)."""
        if getattr(curve, "_pushed_n", -1) != self.n:
            curve.setData(*self.view())
            curve._pushed_n = self.n

    def clear(self) -> None:
        self.n = 0


def _style_plot(plot: pg.PlotItem, title: str, left: str, left_units: str | None, bottom: str) -> None:
    plot.setTitle(title, size="10pt")
    plot.setLabel("left", left, units=left_units)
    plot.setLabel("bottom", bottom)
    plot.showGrid(x=True, y=True, alpha=0.2)
    plot.setClipToView(True)
    plot.setDownsampling(auto=True, mode="peak")
    for axis in ("left", "bottom"):
        plot.getAxis(axis).setTextPen("#333333")
        plot.getAxis(axis).setPen("#888888")


def run_training(state: TaskState, config, run_name: str | None):
    """Job: train with the engine; events go to the GUI, the stop flag comes from it."""
    import os

    import torch

    from discomkd.training.trainer import train

    # Leave a core to the interface on small machines so the window never stutters.
    cores = os.cpu_count() or 1
    if cores <= 4:
        torch.set_num_threads(max(1, cores - 1))
    return train(config, on_event=state.publish, stop=state.stop, run_name=run_name)


def run_continue(state: TaskState, run_dir: str, extra_epochs: int):
    from discomkd.training.trainer import continue_run

    return continue_run(run_dir, extra_epochs, on_event=state.publish, stop=state.stop)


class TrainPage(QWidget):
    """Signals: ``training_active(bool)``, ``run_finished(RunEnded)``, ``best_saved(bundle_path)``."""

    start_requested = Signal()
    training_active = Signal(bool)
    run_finished = Signal(object)
    best_saved = Signal(str)
    error = Signal(str, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.job: Job | None = None
        self.last_result = None
        self.run_dir: str | None = None
        self.batch_events = 0
        self.epoch_events = 0
        self._dirty: set[str] = set()  # the plots ("loss", "val") with points not yet pushed
        self._last_pushed = ""
        self._epochs_target = 0
        self._ema: dict[str, float] = {}
        self._modality_colours: dict[str, str] = {}

        layout = QVBoxLayout(self)
        layout.addWidget(self._build_header())
        layout.addLayout(self._build_status_row())
        pg.setConfigOptions(antialias=True, background="w", foreground="#333333")
        plots = QSplitter(Qt.Orientation.Horizontal)
        plots.addWidget(self._build_loss_plot())
        plots.addWidget(self._build_validation_plot())
        plots.setSizes([600, 500])
        vertical = QSplitter(Qt.Orientation.Vertical)
        vertical.addWidget(plots)
        vertical.addWidget(self._build_log())
        vertical.setSizes([480, 150])
        layout.addWidget(vertical, 1)

        self.timer = QTimer(self)
        self.timer.setInterval(int(1000 / PLOT_HZ))
        self.timer.timeout.connect(self._flush_one_plot)

    def _build_header(self) -> StartStopHeader:
        self.header = StartStopHeader(
            "Train",
            "All single-modality classifiers learn together. Stop at any time: the best model "
            "(chosen per modality on the validation split) is kept.",
            "Start training", start_tip="Train with the current data and configuration (Ctrl+R)",
            stop_tip="Stop after the current batch; the best model so far is kept (Ctrl+.)",
        )
        self.start_button, self.stop_button = self.header.start_button, self.header.stop_button
        self.run_name = QLineEdit()
        self.run_name.setPlaceholderText("run name (optional)")
        self.run_name.setMaximumWidth(220)
        self.header.buttons.insertWidget(0, self.run_name)
        self.start_button.clicked.connect(self.start_requested)
        self.stop_button.clicked.connect(self.stop)
        return self.header

    def _build_status_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("Not started")
        self.progress.setTextVisible(True)
        self.status = QLabel("Ready.")
        self.status.setObjectName("hint")
        self.status.setMinimumWidth(260)
        row.addWidget(self.progress, 3)
        row.addWidget(self.status, 2)
        return row

    def _build_loss_plot(self) -> pg.PlotWidget:
        """One curve per loss term (per batch, smoothed) and its epoch means as dots; the ramp's end as a line."""
        self.loss_widget = pg.PlotWidget()
        self.loss_plot = self.loss_widget.getPlotItem()
        # Short titles: a title's width is the plot's minimum width; the details are in the tooltip.
        _style_plot(self.loss_plot, "Training losses", "loss (terms unweighted, total weighted)", None, "epoch")
        self.loss_legend = self.loss_plot.addLegend(offset=(-10, 10), colCount=3)
        self.loss_curves: dict[str, pg.PlotDataItem] = {}
        self.epoch_curves: dict[str, pg.PlotDataItem] = {}
        self.loss_series = {t: Series() for t in TERMS}
        self.epoch_series = {t: Series() for t in TERMS}
        for term in TERMS:
            width = 2.4 if term == "total" else 1.6
            name = "total" if term == "total" else f"L_{term}"
            # Dense per-batch curves are drawn without antialiasing: it is most of the cost of a redraw.
            self.loss_curves[term] = self.loss_plot.plot(pen=pg.mkPen(TERM_COLOURS[term], width=width), name=name,
                                                         antialias=False)
            self.epoch_curves[term] = self.loss_plot.plot(
                pen=None, symbol="o", symbolSize=7, symbolBrush=TERM_COLOURS[term], symbolPen="w")
        self.shown_terms: tuple[str, ...] = TERMS
        # Where the loss ramp ends: before it, the ramped terms' weights grow and the total can rise.
        self.ramp_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#999999", width=1, style=Qt.PenStyle.DashLine),
                                         label="loss ramp ends", labelOpts={"position": 0.95, "color": "#666666"})
        self.ramp_line.setVisible(False)
        self.loss_plot.addItem(self.ramp_line, ignoreBounds=True)
        self.loss_widget.setToolTip(LOSS_TOOLTIP)
        return self.loss_widget

    def _build_validation_plot(self) -> pg.PlotWidget:
        """Accuracy and weighted F1 per modality and epoch; the curves are added when a run names its modalities."""
        self.val_widget = pg.PlotWidget()
        self.val_plot = self.val_widget.getPlotItem()
        _style_plot(self.val_plot, "Validation per modality", "score (0 = worst, 1 = best)", None, "epoch")
        self.val_widget.setToolTip("Each modality's classifier on the validation split after each epoch: accuracy "
                                   "(solid line, round dot), weighted F1 (dashed line, square dot). The dots mark "
                                   "the latest epoch; the best epoch per modality is the model kept.")
        self.val_plot.setYRange(0, 1.02, padding=0)
        self.val_legend = self.val_plot.addLegend(offset=(-10, -10), colCount=2)
        self.val_curves: dict[tuple[str, str], pg.PlotDataItem] = {}
        self.val_series: dict[tuple[str, str], Series] = {}
        # The latest point of every curve as a dot: a curve of one point draws no line, and
        # validation comes only at the end of an epoch (one item for all curves keeps redraws cheap).
        self.val_latest = pg.ScatterPlotItem(size=9, pen=pg.mkPen("w", width=1))
        self.val_plot.addItem(self.val_latest)
        self.val_waiting = pg.TextItem("", color="#666666", anchor=(0.5, 0.5))
        self.val_plot.addItem(self.val_waiting, ignoreBounds=True)
        return self.val_widget

    def _build_log(self) -> QPlainTextEdit:
        self.log = QPlainTextEdit()
        self.log.setObjectName("log")
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.log.setPlaceholderText("The training log appears here.")
        return self.log

    # ----- control --------------------------------------------------------------------------
    def is_training(self) -> bool:
        return self.job is not None and self.job.is_running()

    def start(self, config, run_name: str | None = None) -> Job:
        """Start a new training run with a validated TrainingConfig."""
        name = run_name or self.run_name.text().strip() or None
        return self._start_job(lambda state: run_training(state, config, name),
                               f"Starting: {', '.join(m.name for m in config.modalities)}, {config.epochs} epoch(s)…")

    def continue_training(self, run_dir: str, extra_epochs: int) -> Job:
        return self._start_job(lambda state: run_continue(state, run_dir, extra_epochs),
                               f"Continuing {run_dir} for {extra_epochs} more epoch(s)…")

    def _start_job(self, fn, message: str) -> Job:
        if self.is_training():
            raise RuntimeError("A training is already running.")
        self.reset()
        self.append_log(message)
        self.progress.setFormat("Reading the data…")
        self.status.setText("Preparing…")
        self.timer.start()
        self.job = start_job(self, "train", fn, on_event=self.on_event, on_result=self._on_succeeded,
                             on_error=self._on_failed, on_done=self._on_finished, controls=self.header)
        self.training_active.emit(True)
        return self.job

    def stop(self) -> None:
        if self.is_training() and not self.job.stop_requested:
            self.job.request_stop()
            self.stop_button.setEnabled(False)
            self.status.setText("Stopping after this batch; keeping the best model…")
            self.append_log("Stop requested.")

    # ----- plots ------------------------------------------------------------------------------
    def reset(self) -> None:
        for s in (*self.loss_series.values(), *self.epoch_series.values()):
            s.clear()
        for key, curve in list(self.val_curves.items()):
            self.val_plot.removeItem(curve)
            self.val_legend.removeItem(curve)
        self.val_curves.clear()
        self.val_series.clear()
        self._modality_colours.clear()
        self._ema.clear()
        self.batch_events = self.epoch_events = 0
        self.last_result = None
        self.run_dir = None
        self.progress.setValue(0)
        self.log.clear()
        self.set_shown_terms(TERMS)
        self.set_loss_ramp(0.0, 1)
        self.val_waiting.setText("")
        self._set_epoch_axis(1)
        self._dirty = {"loss", "val"}
        self.flush_plots()

    def _val_curve(self, modality: str, metric: str) -> Series:
        key = (modality, metric)
        if key not in self.val_curves:
            if modality not in self._modality_colours:
                self._modality_colours[modality] = MODALITY_COLOURS[len(self._modality_colours) % len(MODALITY_COLOURS)]
            colour = self._modality_colours[modality]
            style = Qt.PenStyle.SolidLine if metric == "accuracy" else Qt.PenStyle.DashLine
            label = f"{modality} {'accuracy' if metric == 'accuracy' else 'weighted F1'}"
            # No symbols: they doubled the cost of a redraw; the solid and dashed lines tell the metrics apart.
            self.val_curves[key] = self.val_plot.plot(pen=pg.mkPen(colour, width=2, style=style), name=label)
            self.val_series[key] = Series()
        return self.val_series[key]

    def _set_epoch_axis(self, epochs: int) -> None:
        """Fix the epoch axis to the whole run: an auto-ranged axis re-lays out both plots on every new point."""
        for plot in (self.loss_plot, self.val_plot):
            plot.enableAutoRange(x=False)
            plot.setXRange(0, max(1, epochs), padding=0.02)
        self.val_waiting.setPos(max(1, epochs) / 2, 0.5)

    def set_shown_terms(self, terms) -> None:
        """Draw only the loss terms that take part in the run (a term switched off, or L_unlabelled
        without unlabelled recordings, would be a flat line at 0); the total is always drawn."""
        shown = tuple(t for t in TERMS if t in terms or t == "total")
        if shown == self.shown_terms:
            return
        self.shown_terms = shown
        self.loss_legend.clear()
        for term in TERMS:
            visible = term in shown
            self.loss_curves[term].setVisible(visible)
            self.epoch_curves[term].setVisible(visible)
            if visible:
                self.loss_legend.addItem(self.loss_curves[term], "total" if term == "total" else f"L_{term}")

    def set_loss_ramp(self, term_ramp: float, epochs: int, active_terms=TERMS) -> str:
        """Mark where the loss ramp ends and explain it in the plot's tooltip; returns the explanation."""
        from discomkd.config import ramp_explanation

        note = ramp_explanation(term_ramp, epochs, list(active_terms))
        self.ramp_line.setVisible(bool(note))
        if note:
            self.ramp_line.setValue(term_ramp * epochs)
        self.loss_widget.setToolTip(LOSS_TOOLTIP + (f"\n\n{note}" if note else ""))
        return note

    def _push(self, plot: str) -> None:
        self._dirty.discard(plot)
        if plot == "loss":
            for term in TERMS:
                self.loss_series[term].push_to(self.loss_curves[term])
                self.epoch_series[term].push_to(self.epoch_curves[term])
        else:
            spots = []
            for key, curve in self.val_curves.items():
                series = self.val_series[key]
                series.push_to(curve)
                if series.n:
                    x, y = series.view()
                    spots.append({"pos": (x[-1], y[-1]), "brush": pg.mkBrush(self._modality_colours[key[0]]),
                                  "symbol": "o" if key[1] == "accuracy" else "s"})
            self.val_latest.setData(spots)
            if spots:
                self.val_waiting.setText("")

    def _flush_one_plot(self) -> None:
        """Timer tick: push one plot with new points (so one event-loop turn repaints at most one plot);
        nothing while the page is hidden (showEvent catches up)."""
        if not self._dirty or not self.isVisible():
            return
        # Take turns: new batches mark the loss plot at every tick, which must not starve the other.
        plot = "val" if self._last_pushed == "loss" and "val" in self._dirty else min(self._dirty)
        self._last_pushed = plot
        self._push(plot)

    def flush_plots(self) -> None:
        """Push every buffered point to the curves now (cheap when nothing changed)."""
        for plot in tuple(self._dirty):
            self._push(plot)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.flush_plots()

    def show_history(self, history: list[dict], title: str = "", record: dict | None = None,
                     log_lines: list[str] | None = None) -> None:
        """Draw a saved run's per-epoch curves and its log (runs reopened from the Runs page); ``record``
        (its run.json) tells which loss terms took part and the loss ramp."""
        if self.is_training():
            return
        self.reset()
        epochs = max((int(row["epoch"]) for row in history), default=1)
        if record:
            from discomkd.config import TrainingConfig

            try:
                config = TrainingConfig.from_dict(record.get("config", {}))
                pairs = int(record.get("data", {}).get("unlabelled_pairs", 0) or 0)
                active = config.training_weights(pairs).active_terms(pairs)
            except (TypeError, ValueError, AttributeError):  # a damaged record: draw every term
                pass
            else:
                self.set_shown_terms(active)
                self.set_loss_ramp(config.term_ramp, int(record.get("epochs_target", epochs) or epochs), active)
        for line in log_lines or []:
            self.append_log(line)
        for row in history:
            epoch = float(row["epoch"])
            for term in TERMS:
                if term in row.get("train_losses", {}):
                    value = row["train_losses"][term]
                    self.epoch_series[term].append(epoch, value)
                    self.loss_series[term].append(epoch, value)  # no per-batch data: join the means
            for modality, metrics in row.get("val", {}).items():
                self._val_curve(modality, "accuracy").append(epoch, metrics["accuracy"])
                self._val_curve(modality, "weighted_f1").append(epoch, metrics["weighted_f1"])
        self._set_epoch_axis(epochs)
        self._dirty = {"loss", "val"}
        self.flush_plots()
        n = len(history)
        self.progress.setValue(1000 if n else 0)
        self.progress.setFormat(f"{title}: {n} epoch(s) (reopened run)" if title else f"{n} epoch(s)")
        self.status.setText("Showing a saved run. Start a new training with Start.")

    # ----- engine events (GUI thread): one method per event (events.TrainingEventHandler) ---------
    def on_event(self, event: TrainingEvent) -> None:
        send_event(self, event)

    def on_data_progress(self, event: DataProgress) -> None:
        self.progress.setFormat(f"{event.stage}: {event.done}/{event.total} files")

    def on_run_started(self, event: RunStarted) -> None:
        self.run_dir = event.run_dir
        for modality in event.modalities:  # curves and legend entries once, before the first epoch
            self._val_curve(modality, "accuracy")
            self._val_curve(modality, "weighted_f1")
        self._epochs_target = event.epochs
        self._set_epoch_axis(event.epochs)
        active = event.active_terms or TERMS
        self.set_shown_terms(active)
        ramp_note = self.set_loss_ramp(event.term_ramp, event.epochs, active)
        if not self.val_series or not any(s.n for s in self.val_series.values()):
            self.val_waiting.setText(f"Validation runs at the end of each epoch:\n"
                                     f"the first points appear when epoch {event.start_epoch + 1} ends.")
        self.append_log(event.summary())
        if ramp_note and event.start_epoch < event.term_ramp * event.epochs:
            self.append_log(ramp_note)
        self.progress.setFormat(f"Epoch {event.start_epoch + 1}/{event.epochs} · starting…")

    def on_batch_ended(self, event: BatchEnded) -> None:
        self.batch_events += 1
        x = (event.epoch - 1) + event.step / event.steps_per_epoch
        for term in TERMS:
            value = event.losses.get(term)
            if value is None:
                continue
            prev = self._ema.get(term)
            smooth = value if prev is None else SMOOTHING * prev + (1 - SMOOTHING) * value
            self._ema[term] = smooth
            self.loss_series[term].append(x, smooth)
        self._dirty.add("loss")
        self.progress.setValue(int(event.progress * 1000))
        self.progress.setFormat(
            f"Epoch {event.epoch}/{self._epochs_target or '?'} · step {event.step}/{event.steps_per_epoch} · "
            f"ETA {fmt_duration(event.eta_s)}")
        self.status.setText(f"{event.samples_per_s:,.0f} samples/s · total loss {event.losses.get('total', 0):.3f}")

    def on_epoch_ended(self, event: EpochEnded) -> None:
        self.epoch_events += 1
        for term in TERMS:
            if term in event.train_losses:
                self.epoch_series[term].append(float(event.epoch), event.train_losses[term])
        for modality, metrics in event.val_metrics.items():
            self._val_curve(modality, "accuracy").append(float(event.epoch), metrics["accuracy"])
            self._val_curve(modality, "weighted_f1").append(float(event.epoch), metrics["weighted_f1"])
        self._dirty.update(("loss", "val"))
        val = ", ".join(f"{m} acc {v['accuracy']:.3f} / wF1 {v['weighted_f1']:.3f}" for m, v in event.val_metrics.items())
        self.append_log(f"Epoch {event.epoch}/{event.epochs}: loss {event.train_losses.get('total', 0):.4f} · "
                        f"validation {val or 'n/a'} · {event.epoch_time_s:.1f} s")

    def on_teaching_changed(self, event: TeachingChanged) -> None:
        self.append_log(f"Epoch {event.epoch}: {event.text}")

    def on_stage_progress(self, event: StageProgress) -> None:
        self.progress.setValue(int(event.fraction * 1000))
        self.progress.setFormat(event.text)
        if event.fraction >= 1.0:  # the stage's end in the log; its steps only beside the bar
            self.append_log(event.text)

    def on_best_model_saved(self, event: BestModelSaved) -> None:
        self.append_log(f"Best model saved (epoch {event.epoch}; improved: {', '.join(event.improved)}).")
        self.best_saved.emit(event.bundle_path)

    def on_run_ended(self, event: RunEnded) -> None:
        pass  # the job returns the same RunEnded: _on_succeeded shows it

    def _on_succeeded(self, result) -> None:
        self.last_result = result
        self.flush_plots()
        self.append_log(result.reason)
        for modality, m in (result.test_metrics or {}).items():
            self.append_log(f"Test {modality}: accuracy {m['accuracy']:.3f}, weighted F1 {m['weighted_f1']:.3f}, "
                            f"macro F1 {m['macro_f1']:.3f} (best epoch {m.get('best_epoch', '?')})")
        if result.status == "finished":
            self.progress.setValue(1000)
        self.progress.setFormat({"finished": "Finished", "stopped": "Stopped", "failed": "Failed"}.get(result.status, result.status)
                                + f" after {result.epochs_done} epoch(s)")
        # A failure's whole message (what to try) stays in view; a finish or stop gets one short line.
        self.status.setText(result.reason if result.status == "failed" else status_line(result.reason))
        self.status.setToolTip(result.reason)
        if result.status == "failed":
            self.error.emit(result.reason, "")
        self.run_finished.emit(result)

    def _on_failed(self, message: str, details: str) -> None:
        self.append_log(message)
        self.status.setText(message)
        self.progress.setFormat("Failed")
        self.error.emit(message, details)

    def _on_finished(self) -> None:
        self.timer.stop()
        self.flush_plots()
        self.training_active.emit(False)

    def append_log(self, line: str) -> None:
        self.log.appendPlainText(line)


def status_line(reason: str, limit: int = 80) -> str:
    """The run's end in one short line beside the progress bar: its first sentence, and a pointer to
    the log (which holds the whole reason, e.g. advice to train longer) when there is more."""
    if len(reason) <= limit:
        return reason
    first = reason.split(". ", 1)[0].rstrip(".")
    return f"{first[:limit]}. More in the log below."
