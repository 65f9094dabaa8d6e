"""Shipped resources (icons, demo data with licences); located via discomkd.paths.resources_dir()."""
