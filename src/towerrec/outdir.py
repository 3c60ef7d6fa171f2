"""Results folders: recognised before a run, refused or cleared, and marked complete after it.

`towerrec evaluate --out`, `run` and `tune` write many files; a run killed half-way must not pass
for a finished one, and a new run must not mix its files with an old one's (old `seed-*` folders,
or recs of models from another dataset, beside the new ones). So:

- every file is written atomically (`towerrec.files`), and `COMPLETE` is written last: a folder
  without it is a run that died (or is still running). `COMPLETE` is a small JSON record
  (command, finish time, the files written, relative paths) so it is also a checklist.
- `--out` must be new, empty, or a towerrec results folder; a results folder is refused unless
  `--overwrite`, which deletes it first. "A towerrec results folder" means: every entry, at every
  depth, is a name towerrec writes there (`LAYOUTS`; plus `.*.tmp` files that a killed atomic write
  leaves behind) and no entry is a symlink. Anything else (a user's notes, a dataset, another
  project) makes the folder foreign: an error even with `--overwrite`, naming the first foreign
  entry, so towerrec never deletes what it did not write.
"""
from __future__ import annotations

import fnmatch
import json
import shutil
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Union

from towerrec.errors import TowerrecError
from towerrec.files import write_text

MARKER = "COMPLETE"
TEMPORARY = ".*.tmp"      # `towerrec.files.atomic_path` names its temporary files like this

Layout = dict[str, Union["Layout", None]]   # name pattern -> sub-layout (a folder) or None (a file)

#: what `towerrec evaluate --out` writes (`towerrec.audit`), also each `seed-<n>/` of a run
EVALUATION: Layout = {"split": {"*.csv": None}, "recs": {"*.csv": None}, "per_user": {"*.parquet": None},
                      "results.json": None, MARKER: None}
#: what `towerrec run` writes (`towerrec.experiments.results`, `report`, `manifest`)
EXPERIMENT: Layout = {"seed-[0-9]*": EVALUATION, "experiment.toml": None, "leaderboard.csv": None,
                      "leaderboard.md": None, "significance.csv": None, "significance_beyond.csv": None,
                      "per_user.parquet": None,
                      "results.json": None, "report.html": None, "manifest.json": None, MARKER: None}
#: what `towerrec tune` writes (`towerrec.experiments.tune`); SQLite may leave a journal beside the db
TUNE: Layout = {"optuna.db": None, "optuna.db-journal": None, "trials.csv": None, "best_config.toml": None,
                "manifest.json": None, MARKER: None}
#: what a rolling evaluation writes (`towerrec.experiments.rolling`, from `evaluate` or `run`)
ROLLING: Layout = {"rolling.json": None, "rolling.csv": None, "rolling.png": None, "report.html": None,
                   "manifest.json": None, MARKER: None}
LAYOUTS: dict[str, Layout] = {"evaluate": EVALUATION, "run": EXPERIMENT, "tune": TUNE, "rolling": ROLLING}
#: any mix of the above (an older towerrec let `evaluate` and `run` share a folder)
ANY: Layout = {**EVALUATION, **EXPERIMENT, **TUNE, **ROLLING}


def _foreign(folder: Path, layout: Layout, root: Path) -> str | None:
    """The first entry under `folder` that `layout` does not allow (relative to `root`), or None."""
    for entry in sorted(folder.iterdir()):
        rel = entry.relative_to(root).as_posix()
        if entry.is_symlink():
            return rel
        if fnmatch.fnmatchcase(entry.name, TEMPORARY) and entry.is_file():
            continue
        sub = next((layout[p] for p in layout if fnmatch.fnmatchcase(entry.name, p)), "missing")
        if sub == "missing" or (sub is None) != entry.is_file():
            return rel
        if sub is not None:
            inner = _foreign(entry, sub, root)
            if inner is not None:
                return inner
    return None


def results_kind(folder: str | Path) -> str | None:
    """"evaluate", "run", "tune" (the first layout that fits) or "mix" when `folder` is a non-empty
    towerrec results folder, else None (absent, empty, a symlink, or holding anything else)."""
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink() or not any(folder.iterdir()):
        return None
    if _foreign(folder, ANY, folder) is not None:
        return None
    return next((kind for kind, layout in LAYOUTS.items() if _foreign(folder, layout, folder) is None), "mix")


def prepare_out(out: str | Path, *, overwrite: bool, option: str = "--out") -> Path:
    """Make `out` ready for a new `evaluate`/`run`: create it, or refuse it, or with `overwrite`
    delete the old results in it (only if every entry is one towerrec writes, of any kind)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TowerrecError(f"{option} {out} is a file, not a folder")
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return out
    found = results_kind(out)
    if found is None:
        entry = "." if out.is_symlink() else _foreign(out, ANY, out)
        raise TowerrecError(f"{option} {out} is not empty and not a towerrec results folder (it holds "
                            f"{entry!r}); choose a new or empty folder (--overwrite never deletes files "
                            f"towerrec did not write)")
    if not overwrite:
        state = "complete" if (out / MARKER).is_file() else "incomplete (killed or still running)"
        what = "towerrec run" if found == "mix" else f"`towerrec {found}`"
        raise TowerrecError(f"{option} {out} holds the results of another {what} ({state}); pass --overwrite "
                            f"to replace them, or choose another {option}")
    clear(out)
    return out


def clear(out: Path) -> None:
    """Delete every entry of the results folder `out` (the caller has checked that all are ours)."""
    for entry in out.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def prepare_tune_out(out: str | Path, option: str = "--out") -> Path:
    """`tune` resumes in its own folder: `out` may be new, empty or an earlier tune folder (whose
    `COMPLETE` is removed until this run finishes); any other content is refused."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TowerrecError(f"{option} {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    entry = _foreign(out, TUNE, out)
    if entry is not None:
        raise TowerrecError(f"{option} {out} is not a tune folder (it holds {entry!r}); tune resumes only in "
                            f"its own folder: choose a new or empty one")
    (out / MARKER).unlink(missing_ok=True)
    return out


def mark_complete(out: str | Path, *, command: Sequence[str] | None = None) -> Path:
    """Write `COMPLETE` last: the command, the finish time and every file of the folder."""
    out = Path(out)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                   if p.is_file() and p.name != MARKER and not fnmatch.fnmatchcase(p.name, TEMPORARY))
    record = {"complete": True, "command": list(command) if command is not None else None,
              "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "files": files}
    return write_text(out / MARKER, json.dumps(record, indent=2) + "\n")


def is_complete(out: str | Path) -> bool:
    """Did the run that wrote `out` finish (its `COMPLETE` marker exists)?"""
    return (Path(out) / MARKER).is_file()
