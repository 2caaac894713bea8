"""The protocol's phase files: one Optuna study each (PROTOCOL.md). Installed with hpsearch as
the package `hpsearch.studies`, so `hpsearch protocol` finds them from any folder; a file of
the same name in your own `studies/` folder (or --studies-dir) overrides one.
"""
