"""Loader helpers shared by the data tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from towerrec.data.load import LoadOptions, load_interactions
from towerrec.errors import DataError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def error_of(source, options: LoadOptions = LoadOptions()) -> str:
    """The message of the DataError that loading `source` raises."""
    with pytest.raises(DataError) as info:
        load_interactions(source, options)
    return str(info.value)
