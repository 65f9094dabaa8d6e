"""Reusable widgets of the application (no ML here: they draw what the engine computed)."""
