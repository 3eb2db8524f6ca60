"""Offline pipelines that learn recommenders from what a real service sees: the catalog and its logs."""
