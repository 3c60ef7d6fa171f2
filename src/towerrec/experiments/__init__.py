"""Experiments described by a TOML file: runs over seeds and models, significance against the best
baseline, a self-contained HTML report, a reproducibility manifest, and Optuna tuning on validation."""
