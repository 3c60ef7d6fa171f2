"""Experiments described by a TOML file: runs over seeds and models, significance against the best
baseline, a self-contained HTML report, a reproducibility manifest, and Optuna tuning on validation.

Public surface: `load_experiment`, `load_config`, `run_experiment`, `tune` (imported on first use:
they pull in matplotlib and optuna, the `report` extra).
"""
from __future__ import annotations

from towerrec.lazy import lazy_exports

_PUBLIC = {
    "load_experiment": "towerrec.experiments.config",
    "load_config": "towerrec.experiments.config",
    "Experiment": "towerrec.experiments.config",
    "run_experiment": "towerrec.experiments.runner",
    "tune": "towerrec.experiments.tune",
}
__getattr__, __all__ = lazy_exports("towerrec.experiments", _PUBLIC)
