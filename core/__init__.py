"""DisCoM-KD engine: cross-modal knowledge distillation without Qt.

Import name ``discomkd``; lives in the repository folder ``core/``.
"""

__version__ = "0.1.0"
