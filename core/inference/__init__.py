"""Inference layer: predictions from a model bundle, and one modality's classifier exported for a device."""
