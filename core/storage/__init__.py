"""Storage layer: atomic writes, the per-user folders and run folders on disk (the bottom layer)."""
