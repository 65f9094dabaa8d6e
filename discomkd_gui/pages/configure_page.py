"""Configure page: the five loss weights with presets, the GRL, the network and the training settings."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QDoubleValidator, QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from discomkd.config import (
    AGREE_WITH_UNLABELLED_EXPLANATION,
    BACKBONES,
    DEFAULT_TERM_RAMP,
    GRL_SCHEDULES,
    LOSS_EXPLANATIONS,
    LOSS_PRESETS,
    LR_SCHEDULES,
    OPTIMIZERS,
    ORTHOGONALITY,
    PRESET_SCHEDULES,
    SELF_LABEL_EXPLANATION,
    TEACHER_SELF_TRAINING_EXPLANATION,
    LossWeights,
    TrainingConfig,
)
from discomkd.config import EXAMPLE as GROUP_EXAMPLE
from discomkd.config import pattern_problem
from discomkd.data.spec import AUGMENTATIONS
from discomkd.errors import ConfigError

from .common import PageHeader, hint_label

TERM_TITLES = {"cl": "L_cl", "aux": "L_aux", "adv": "L_adv", "mod": "L_mod", "perp": "L_perp", "agree": "L_agree",
               "unlabelled": "L_unlabelled"}
BACKBONE_TEXT = {
    "auto": "auto (compact CNN on CPU, ResNet-18 on a GPU)",
    "compact": "compact CNN (fast, CPU friendly)",
    "resnet18": "ResNet-18 (paper; best on a GPU)",
    "cnn1d": "1-D CNN (signals)",
}
DEVICE_TEXT = {"auto": "auto (best available)", "cpu": "CPU", "cuda": "CUDA GPU", "mps": "Apple GPU (MPS)"}
AUGMENTATION_TEXT = {
    "none": "none",
    "shift": "small shifts",
    "flips_rot90": "flips + 90° rotations (overhead imagery)",
    "flips_rot90_shift": "flips + 90° rotations + shifts",
}
CUSTOM = "Custom"


def _spin(lo: float, hi: float, step: float, decimals: int, tip: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    box.setToolTip(tip)
    box.setKeyboardTracking(False)
    return box


def _int_spin(lo: int, hi: int, tip: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setToolTip(tip)
    box.setKeyboardTracking(False)
    return box


class ConfigurePage(QWidget):
    """``config(sources)`` builds a validated TrainingConfig; ``values()/set_values()`` persist it."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.addWidget(PageHeader(
            "Configure",
            "Recommended: the DisCoM-KD terms ramped in plus cross-modal agreement or, with _unlabelled recordings, "
            "teaching on them and a self-training stage for the teaching modality (README: what it trains and "
            "what it measured); the presets also hold the paper's objective and one-term ablations. "
            "Hover over any field for an explanation.",
        ))
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        body = QWidget()
        grid = QGridLayout(body)
        grid.setContentsMargins(0, 0, 8, 0)
        grid.setHorizontalSpacing(14)
        scroll.setWidget(body)
        outer.addWidget(scroll, 1)
        grid.addWidget(self._build_losses_box(), 0, 0, 2, 1)
        grid.addWidget(self._build_training_box(), 0, 1)
        grid.addWidget(self._build_network_box(), 1, 1)
        grid.addWidget(self._build_augmentation_box(), 2, 0, 1, 2)
        grid.setRowStretch(3, 1)
        grid.setColumnStretch(0, 3)
        grid.setColumnStretch(1, 2)

        # Long choices must not widen the page past a 1024-pixel window: combo boxes shrink to a
        # few characters and show their full text when opened (and in their tooltip).
        for combo in self.findChildren(QComboBox):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(10)

        self.set_values(TrainingConfig().to_dict())
        self.set_modalities([])

    # ----- building the form -----------------------------------------------------------------
    def _build_losses_box(self) -> QGroupBox:
        """A weight per loss term (with presets), then how the terms are scheduled and measured."""
        losses = QGroupBox("Loss terms")
        grid = QGridLayout(losses)
        grid.setColumnStretch(2, 1)
        self._add_preset_and_weights(grid)
        self._add_term_settings(grid, len(LossWeights.TERMS) + 1)
        return losses

    def _add_preset_and_weights(self, grid: QGridLayout) -> None:
        """Row 0: the preset; then one row per term: its name, its weight and what it does."""
        self.preset = QComboBox()
        self.preset.addItems(list(LOSS_PRESETS) + [CUSTOM])
        self.preset.setToolTip("Recommended: the five DisCoM-KD terms ramped in plus cross-modal agreement or, when "
                               "the modality folders have _unlabelled recordings, teaching on them instead of "
                               "agreement, then a self-training stage for the teaching modality (measured best, "
                               "see README). Paper's objective: the five terms at 1 from the first step, nothing "
                               "else. Each ablation switches one term off.")
        grid.addWidget(QLabel("Preset"), 0, 0)
        grid.addWidget(self.preset, 0, 1, 1, 2)
        self.weights: dict[str, QDoubleSpinBox] = {}
        for row, term in enumerate(LossWeights.TERMS, start=1):
            box = _spin(0.0, 100.0, 0.1, 2, LOSS_EXPLANATIONS[term])
            box.setObjectName(f"weight_{term}")
            self.weights[term] = box
            grid.addWidget(QLabel(f"<b>{TERM_TITLES[term]}</b>"), row, 0)
            grid.addWidget(box, row, 1)
            grid.addWidget(hint_label(LOSS_EXPLANATIONS[term], wrap=True), row, 2)
            box.valueChanged.connect(self._weights_edited)
        self.preset.currentTextChanged.connect(self._apply_preset)

    def _add_term_settings(self, grid: QGridLayout, row: int) -> None:
        """From ``row`` down: the GRL factor and schedule, L_perp's form, the ramp, L_agree's temperature."""
        self.grl_lambda = _spin(0.0, 10.0, 0.1, 2, "Gradient-reversal factor λ for L_adv (paper: 1).")
        self.grl_schedule = QComboBox()
        for s in GRL_SCHEDULES:
            self.grl_schedule.addItem({"constant": "constant λ", "dann": "DANN ramp 0 → λ"}[s], s)
        self.grl_schedule.setToolTip("DANN ramp: the reversal grows from 0 to λ during training (Ganin et al.).")
        grl_row = QHBoxLayout()
        grl_row.addWidget(self.grl_lambda)
        grl_row.addWidget(self.grl_schedule, 1)
        grid.addWidget(QLabel("GRL factor λ"), row, 0)
        grid.addLayout(grl_row, row, 1, 1, 2)
        self.term_ramp = _spin(0.0, 1.0, 0.05, 2, "Share of training over which L_aux, L_adv, L_mod and L_perp "
                                                  "grow from 0 to their weight (paper: 0, full weight from the start).")
        self.term_ramp.valueChanged.connect(self._weights_edited)
        grid.addWidget(QLabel("Ramp"), row + 2, 0)
        grid.addWidget(self.term_ramp, row + 2, 1)
        grid.addWidget(hint_label("share of training over which L_aux, L_adv, L_mod, L_perp ramp in (paper: 0)",
                                  wrap=True), row + 2, 2)
        self.agree_temperature = _spin(0.1, 20.0, 0.5, 1, "Temperature of L_agree: above 1 softens both "
                                                          "predictions so that a confident peer still teaches "
                                                          "which classes look alike (Hinton's KD).")
        grid.addWidget(QLabel("Agreement T"), row + 3, 0)
        grid.addWidget(self.agree_temperature, row + 3, 1)
        grid.addWidget(hint_label("temperature of L_agree (1: none)"), row + 3, 2)
        self.self_label_threshold = _spin(0.0, 1.0, 0.05, 2, SELF_LABEL_EXPLANATION)
        grid.addWidget(QLabel("Self-labels from"), row + 4, 0)
        grid.addWidget(self.self_label_threshold, row + 4, 1)
        grid.addWidget(hint_label("confidence from which the teaching modality learns its own predictions on "
                                  "unlabelled recordings (0: never, the default)", wrap=True), row + 4, 2)
        # What a run that learns from _unlabelled recordings does besides L_unlabelled (tooltips say why).
        self.teacher_self_training = QCheckBox("self-training stage")
        self.teacher_self_training.setToolTip(TEACHER_SELF_TRAINING_EXPLANATION)
        self.teacher_self_training.setChecked(TrainingConfig.teacher_self_training)
        self.agree_with_unlabelled = QCheckBox("L_agree too")
        self.agree_with_unlabelled.setToolTip(AGREE_WITH_UNLABELLED_EXPLANATION)
        recordings_row = QHBoxLayout()
        recordings_row.addWidget(self.teacher_self_training)
        recordings_row.addWidget(self.agree_with_unlabelled)
        recordings_row.addStretch(1)
        grid.addWidget(QLabel("With recordings"), row + 5, 0)
        grid.addLayout(recordings_row, row + 5, 1, 1, 2)
        self.orthogonality = QComboBox()
        for o in ORTHOGONALITY:
            self.orthogonality.addItem({"abs": "|cos| (default)", "square": "cos²", "signed": "signed cos (authors' code)"}[o], o)
        self.orthogonality.setToolTip("How L_perp measures the overlap of two embeddings.")
        grid.addWidget(QLabel("L_perp form"), row + 1, 0)
        grid.addWidget(self.orthogonality, row + 1, 1, 1, 2)

    def _build_training_box(self) -> QGroupBox:
        training = QGroupBox("Training")
        form = QFormLayout(training)
        self.epochs = _int_spin(1, 10000, "Passes over the largest modality (paper: 300 on a GPU).")
        self.batch_size = _int_spin(2, 4096, "Samples per modality per step (paper: 128).")
        self.learning_rate = self._learning_rate_field()
        self.lr_schedule = QComboBox()
        for schedule in LR_SCHEDULES:
            self.lr_schedule.addItem(
                "cosine decay to zero" if schedule == "cosine" else "constant (paper)", schedule)
        self.lr_schedule.setToolTip("Cosine decay lowers the rate smoothly over the run; the paper keeps it constant.")
        self.optimizer = QComboBox()
        self.optimizer.addItems(list(OPTIMIZERS))
        self.weight_decay = _spin(0.0, 1.0, 1e-4, 5, "L2 penalty on the weights (0 = none).")
        self.device = QComboBox()
        for d in ("auto", "cpu", "cuda", "mps"):
            self.device.addItem(DEVICE_TEXT[d], d)
        self.device_note = hint_label("checking which devices are available…")
        self.mixed_precision = QCheckBox("Mixed precision")
        self.mixed_precision.setToolTip("Faster training: float16/bfloat16 on an NVIDIA GPU, and bfloat16 on a CPU that "
                                        "computes it natively (recent Xeon, AMD Zen 4); float32 elsewhere. Untick for "
                                        "float32 throughout.")
        for label, widget in (("Epochs", self.epochs), ("Batch size", self.batch_size),
                              ("Learning rate", self.learning_rate), ("Rate schedule", self.lr_schedule),
                              ("Optimiser", self.optimizer), ("Weight decay", self.weight_decay),
                              ("Device", self.device), ("", self.device_note), ("", self.mixed_precision)):
            form.addRow(label, widget)
        return training

    def _learning_rate_field(self) -> QLineEdit:
        """A text field (a spin box cannot show 1e-4 and 0.5 alike), marked invalid while it is not a rate."""
        edit = QLineEdit()
        edit.setObjectName("learningRate")
        validator = QDoubleValidator(1e-7, 10.0, 8, edit)
        validator.setNotation(QDoubleValidator.Notation.ScientificNotation)
        edit.setValidator(validator)
        edit.setToolTip("Step size of the optimiser, e.g. 1e-3 (paper: 1e-4 with ResNet-18).")
        edit.textChanged.connect(self._check_learning_rate)
        return edit

    def _build_network_box(self) -> QGroupBox:
        network = QGroupBox("Network and data")
        form = QFormLayout(network)
        self.backbone = QComboBox()
        for b in BACKBONES:
            self.backbone.addItem(BACKBONE_TEXT[b], b)
        self.backbone.setToolTip("Encoder network; signals always use the 1-D CNN.")
        self.embed_dim = _int_spin(2, 2048, "Size of z_inv, z_inf and z_irr (paper: 256).")
        self.seed = _int_spin(0, 2**31 - 1, "Random seed of the split, the initial weights and the batches.")
        form.addRow("Backbone", self.backbone)
        form.addRow("Embedding size", self.embed_dim)
        form.addRow("Split", self._split_row())
        form.addRow("Seed", self.seed)
        form.addRow("Group files by", self._group_by_field())
        return network

    def _split_row(self) -> QHBoxLayout:
        """Train and validation shares; the test share is what is left."""
        row = QHBoxLayout()
        self.split_train = _spin(0.05, 0.95, 0.05, 2, "Share of each class used for training.")
        # No zero: the best epoch of each modality is chosen on validation data (TrainingConfig.validate).
        self.split_val = _spin(0.05, 0.9, 0.05, 2, "Share used to pick the best epoch (per modality).")
        self.split_test = QLabel()
        self.split_test.setToolTip("Test share = 1 − train − validation; reported on the Results page.")
        for label, w in (("train", self.split_train), ("val", self.split_val)):
            row.addWidget(QLabel(label))
            row.addWidget(w)
        row.addWidget(self.split_test)
        self.split_train.valueChanged.connect(self._split_changed)
        self.split_val.valueChanged.connect(self._split_changed)
        return row

    def _build_augmentation_box(self) -> QGroupBox:
        """One choice per modality, filled by ``set_modalities``."""
        self.augment_box = QGroupBox("Augmentation per modality")
        self.augment_form = QFormLayout(self.augment_box)
        self.augment_combos: dict[str, QComboBox] = {}
        self._augment_defaults: dict[str, str] = {}
        self._augment_choice: dict[str, str] = {}
        return self.augment_box

    # ----- weights and presets ------------------------------------------------------------
    def _apply_preset(self, name: str) -> None:
        if name not in LOSS_PRESETS:
            return
        weights = LOSS_PRESETS[name].as_dict()
        for term, box in self.weights.items():
            box.blockSignals(True)
            box.setValue(weights[term])
            box.blockSignals(False)
        schedule = PRESET_SCHEDULES.get(name, {"term_ramp": DEFAULT_TERM_RAMP})
        self.term_ramp.blockSignals(True)
        self.term_ramp.setValue(schedule["term_ramp"])
        self.term_ramp.blockSignals(False)
        if "grl_schedule" in schedule:
            self.grl_schedule.setCurrentIndex(max(0, self.grl_schedule.findData(schedule["grl_schedule"])))
            self.grl_lambda.setValue(schedule["grl_lambda"])
        self.changed.emit()

    def _weights_edited(self) -> None:
        current = {t: round(b.value(), 4) for t, b in self.weights.items()}
        ramp = round(self.term_ramp.value(), 4)
        match = next((n for n, w in LOSS_PRESETS.items()
                      if {k: round(v, 4) for k, v in w.as_dict().items()} == current
                      and ramp == PRESET_SCHEDULES.get(n, {}).get("term_ramp", DEFAULT_TERM_RAMP)), CUSTOM)
        self.preset.blockSignals(True)
        self.preset.setCurrentText(match)
        self.preset.blockSignals(False)
        self.changed.emit()

    def set_weight(self, term: str, value: float) -> None:
        self.weights[term].setValue(value)

    def _split_changed(self) -> None:
        self.split_val.setMaximum(round(1.0 - self.split_train.value(), 2))
        test = max(0.0, 1.0 - self.split_train.value() - self.split_val.value())
        self.split_test.setText(f"test {test:.2f}" + (" (no test metrics)" if test < 0.005 else ""))

    def _group_by_field(self) -> QLineEdit:
        """A group pattern for the split (speakers, subjects...), checked as it is typed."""
        self.group_by = QLineEdit()
        self.group_by.setObjectName("groupBy")
        self.group_by.setPlaceholderText("none: split by class")
        self.group_by.setToolTip(
            "Hold out whole groups of files (speakers, subjects, sessions, sites) in validation and test, so that "
            "they measure what new ones will see and the calibration is fitted on them: a regular expression "
            "searched in each file's path below its class folder, whose first group in parentheses names the group. "
            f"Example: {GROUP_EXAMPLE}. Empty: files are split by class only.")
        self.group_by.textChanged.connect(self._check_group_by)
        return self.group_by

    def _check_group_by(self) -> None:
        problem = pattern_problem(self.group_by.text().strip())
        self.group_by.setProperty("invalid", bool(problem))
        self.group_by.setStatusTip(problem)
        self.group_by.style().unpolish(self.group_by)
        self.group_by.style().polish(self.group_by)

    def _check_learning_rate(self) -> None:
        ok = self.learning_rate.hasAcceptableInput()
        self.learning_rate.setProperty("invalid", not ok)
        self.learning_rate.style().unpolish(self.learning_rate)
        self.learning_rate.style().polish(self.learning_rate)

    # ----- devices and modalities ---------------------------------------------------------
    def set_available_devices(self, devices: list[str]) -> None:
        """Grey out devices PyTorch does not see here (found by a background job at start-up)."""
        model = self.device.model()
        if isinstance(model, QStandardItemModel):
            for i in range(self.device.count()):
                d = self.device.itemData(i)
                item = model.item(i)
                item.setEnabled(d == "auto" or d in devices)
        names = ", ".join(DEVICE_TEXT[d] for d in devices)
        self.device_note.setText(f"Available here: {names}")
        if self.device.currentData() not in ("auto", *devices):
            self.device.setCurrentIndex(0)

    def set_modalities(self, modalities: list[tuple[str, str, str]]) -> None:
        """(name, kind, default augmentation) per ready modality: one augmentation choice each."""
        for name, combo in self.augment_combos.items():
            self._augment_choice[name] = combo.currentData()
        while self.augment_form.rowCount():
            self.augment_form.removeRow(0)
        self.augment_combos = {}
        self._augment_defaults = {}
        if not modalities:
            self.augment_form.addRow(QLabel("Add modalities on the Data page first."))
            return
        for name, kind, default in modalities:
            combo = QComboBox()
            combo.addItem(f"default for {kind}: {AUGMENTATION_TEXT.get(default, default)}", "")
            for a in AUGMENTATIONS:
                combo.addItem(AUGMENTATION_TEXT.get(a, a), a)
            previous = self._augment_choice.get(name, "")
            combo.setCurrentIndex(max(0, combo.findData(previous)))
            combo.setToolTip("Random changes applied to training batches. Flips and rotations destroy digits and spectrograms.")
            self.augment_combos[name] = combo
            self._augment_defaults[name] = default
            self.augment_form.addRow(name, combo)

    def overrides_for(self, name: str) -> dict:
        combo = self.augment_combos.get(name)
        choice = combo.currentData() if combo else self._augment_choice.get(name, "")
        return {"augmentation": choice} if choice else {}

    # ----- building and persisting the configuration ----------------------------------------
    def values(self) -> dict:
        """The form as a plain dict (TrainingConfig.to_dict() without modalities); may be invalid."""
        try:
            lr = float(self.learning_rate.text())
        except ValueError:
            lr = float("nan")
        train, val = round(self.split_train.value(), 4), round(self.split_val.value(), 4)
        return {
            "weights": {t: b.value() for t, b in self.weights.items()},
            "grl_lambda": self.grl_lambda.value(),
            "grl_schedule": self.grl_schedule.currentData(),
            "orthogonality": self.orthogonality.currentData(),
            "term_ramp": self.term_ramp.value(),
            "agree_temperature": self.agree_temperature.value(),
            "self_label_threshold": self.self_label_threshold.value(),
            "agree_with_unlabelled": self.agree_with_unlabelled.isChecked(),
            "teacher_self_training": self.teacher_self_training.isChecked(),
            "backbone": self.backbone.currentData(),
            "embed_dim": self.embed_dim.value(),
            "optimizer": self.optimizer.currentText(),
            "learning_rate": lr,
            "lr_schedule": self.lr_schedule.currentData(),
            "weight_decay": self.weight_decay.value(),
            "batch_size": self.batch_size.value(),
            "epochs": self.epochs.value(),
            "split": [train, val, round(max(0.0, 1.0 - train - val), 4)],
            "group_by": self.group_by.text().strip(),
            "seed": self.seed.value(),
            "device": self.device.currentData(),
            "mixed_precision": self.mixed_precision.isChecked(),
            "augmentation": {n: c.currentData() for n, c in self.augment_combos.items()} | {
                n: v for n, v in self._augment_choice.items() if n not in self.augment_combos},
        }

    def set_values(self, values: dict) -> None:
        """Fill the form from a (possibly older or partial) saved dict; unknown values are ignored."""
        try:
            config = TrainingConfig.from_dict({k: v for k, v in values.items() if k != "modalities"})
        except (TypeError, ValueError):
            config = TrainingConfig()
        for term, box in self.weights.items():
            box.blockSignals(True)
            box.setValue(getattr(config.weights, term))
            box.blockSignals(False)
        self.term_ramp.blockSignals(True)
        self.term_ramp.setValue(config.term_ramp)
        self.term_ramp.blockSignals(False)
        self.agree_temperature.setValue(config.agree_temperature)
        self.self_label_threshold.setValue(config.self_label_threshold)
        # A form saved before the setting existed takes today's default (a run record says its own).
        self.agree_with_unlabelled.setChecked(bool(values.get("agree_with_unlabelled",
                                                              TrainingConfig.agree_with_unlabelled)))
        self.teacher_self_training.setChecked(bool(values.get("teacher_self_training",
                                                              TrainingConfig.teacher_self_training)))
        self._weights_edited()
        self.grl_lambda.setValue(config.grl_lambda)
        self.grl_schedule.setCurrentIndex(max(0, self.grl_schedule.findData(config.grl_schedule)))
        self.orthogonality.setCurrentIndex(max(0, self.orthogonality.findData(config.orthogonality)))
        self.backbone.setCurrentIndex(max(0, self.backbone.findData(config.backbone)))
        self.embed_dim.setValue(config.embed_dim)
        self.optimizer.setCurrentText(config.optimizer)
        self.learning_rate.setText(f"{config.learning_rate:g}")
        self.lr_schedule.setCurrentIndex(max(0, self.lr_schedule.findData(config.lr_schedule)))
        self.weight_decay.setValue(config.weight_decay)
        self.batch_size.setValue(config.batch_size)
        self.epochs.setValue(config.epochs)
        self.split_train.setValue(config.split[0])
        self.split_val.setValue(config.split[1])
        self._split_changed()
        self.seed.setValue(config.seed)
        self.group_by.setText(config.group_by)
        self.device.setCurrentIndex(max(0, self.device.findData(config.device)))
        self.mixed_precision.setChecked(config.mixed_precision)
        for name, choice in (values.get("augmentation") or {}).items():
            self._augment_choice[name] = choice
            if name in self.augment_combos:
                combo = self.augment_combos[name]
                combo.setCurrentIndex(max(0, combo.findData(choice)))

    def config(self, sources: list[tuple]) -> TrainingConfig:
        """A validated configuration for the given (name, folder[, overrides]) modalities; raises ConfigError.

        ``overrides`` are the Data page's choices for the folder (its kind); this page adds augmentation."""
        if not self.learning_rate.hasAcceptableInput():
            raise ConfigError("The learning rate must be a positive number such as 0.001 or 1e-4.")
        values = {k: v for k, v in self.values().items() if k != "augmentation"}
        values["modalities"] = [
            {"name": name, "folder": folder, "overrides": {**(extra[0] if extra else {}), **self.overrides_for(name)}}
            for name, folder, *extra in sources
        ]
        config = TrainingConfig.from_dict(values)
        return config.validate()
