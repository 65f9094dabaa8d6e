"""Training layer: the DisCoM-KD trainer, its events, baselines and the comparison of methods."""
