"""Atomic writes: a failure mid-write leaves the old file (or none), never a partial one."""
from __future__ import annotations

import pytest

from towerrec.files import atomic_path, write_text


def test_write_text_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "a.json"
    write_text(target, "old")
    write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]   # no temporary left behind


def test_error_inside_keeps_old_version_and_removes_temporary(tmp_path):
    target = tmp_path / "a.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
