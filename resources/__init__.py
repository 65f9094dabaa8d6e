"""Shipped resources (icons, demo data with licences); located via discomkd.storage.paths.resources_dir()."""
