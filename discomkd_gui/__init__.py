"""DisCoM-KD Studio: the Qt desktop application on top of the ``discomkd`` engine."""
