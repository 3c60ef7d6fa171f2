"""Data in: interaction logs and feature tables read, validated and mapped to indices once.

Public surface: `Dataset` (interactions + aligned features + load report), `load_dataset` (a name,
folder, file or DataFrame), `Interactions`, `IdMap`, `FeatureTable`, `LoadOptions`, `LoadReport`,
`Sequences`, `synthetic`.
"""
from __future__ import annotations

from towerrec.data.dataset import Dataset
from towerrec.data.features import FeatureTable
from towerrec.data.idmap import IdMap
from towerrec.data.interactions import Interactions
from towerrec.data.load import LoadOptions, LoadReport
from towerrec.data.registry import DATASETS, load_dataset
from towerrec.data.sequences import Sequences
from towerrec.data.synthetic import synthetic

__all__ = ["DATASETS", "Dataset", "FeatureTable", "IdMap", "Interactions", "LoadOptions", "LoadReport", "Sequences",
           "load_dataset", "synthetic"]
