"""Data layer: modality folders scanned, decoded, cached, split and augmented (no model, no Qt)."""
