"""Named public datasets: the registry, where names resolve, verified downloads, and `load_dataset`.

A dataset is a folder (the convention of ../shared/data/README.md): `interactions.csv|.csv.gz|.parquet`
with `user_id,item_id[,rating][,timestamp|position]`, optional `items.*` and `users.*` feature tables
(multi-valued fields `|`-separated). `load_dataset` is the one front door: it takes a name, such a
folder, a single table file or DataFrames and returns one `Dataset` (`towerrec.data.dataset`).

Names resolve locally first (`data_dir`, `$TOWERREC_DATA`, the cache). Only an explicit download
fetches the official archive, checks its published checksum and converts it into the folder
convention (`towerrec.data.converters`), so a run never reaches the network by surprise.

>>> ds = load_dataset("ml-100k", data_dir="../shared/data")            # doctest: +SKIP
>>> ds.interactions.n_users, ds.titles([0])                            # doctest: +SKIP
(943, ['Kolya (1996)'])
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from towerrec.data.converters import (
    CHUNK,
    convert_amazon_ratings,
    convert_ciao,
    convert_lastfm_hetrec,
    convert_ml1m,
    convert_ml100k,
    convert_movielens_csv,
)
from towerrec.data.dataset import Dataset
from towerrec.data.load import LoadOptions
from towerrec.data.synthetic import DEFAULT_SIZE, synthetic
from towerrec.data.tables import (
    TABLE_SUFFIXES,
    exists,
    file_digest,
    find_table,
    is_dir,
    list_dir,
)
from towerrec.errors import DataError
from towerrec.progress import progress

SYNTHETIC = "synthetic"


# ---- the registry ------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetSpec:
    """A public dataset: where its official archive is and how to turn it into a dataset folder.

    `checksum` is `"sha256:<hex>"` or `"md5:<hex>"` of the archive bytes (None: none published or
    found, so downloading needs `verify=False`). `url=None` means there is no public direct
    download: the dataset resolves only from a local folder. `rows/users/items` are the published
    sizes of the interaction log (distinct users and items that have interactions).
    """

    name: str
    description: str
    url: str | None
    checksum: str | None
    license: str
    convert: Callable[[Path, Path], None] | None = None
    rows: int | None = None
    users: int | None = None
    items: int | None = None
    homepage: str = ""


_ML = "https://files.grouplens.org/datasets/movielens"
_ML_TERMS = ("GroupLens MovieLens terms: research use, no commercial use without permission, cite "
             "Harper & Konstan (2015, ACM TiiS), do not imply endorsement")
_AMAZON_2014 = ("no LICENSE file; cite the preprocessing paper and McAuley et al. (SIGIR 2015); the underlying "
                "Amazon reviews are for research purposes")


DATASETS: dict[str, DatasetSpec] = {
    "ml-100k": DatasetSpec(
        "ml-100k", "MovieLens 100K: 1-5 star movie ratings (1997-98) with titles, genres and user demographics",
        f"{_ML}/ml-100k.zip",
        # GroupLens publishes md5 0e33842e24a9c977be4e0107933c0723 (.zip.md5); sha256 as others pin it
        "sha256:50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        _ML_TERMS + "; the README forbids redistribution without permission", convert_ml100k,
        100_000, 943, 1_682, "https://grouplens.org/datasets/movielens/100k/"),
    "ml-1m": DatasetSpec(
        "ml-1m", "MovieLens 1M: 1-5 star movie ratings (2000-03) with titles, genres and user demographics",
        f"{_ML}/ml-1m.zip",
        # GroupLens publishes md5 c4d9eecfca2ab87c1945afe126590906 (.zip.md5); sha256 as others pin it
        "sha256:a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        _ML_TERMS + "; the README forbids redistribution without permission", convert_ml1m,
        1_000_209, 6_040, 3_706, "https://grouplens.org/datasets/movielens/1m/"),
    "ml-20m": DatasetSpec(
        "ml-20m", "MovieLens 20M: 0.5-5 star movie ratings (1995-2015) with titles, genres and user tags",
        f"{_ML}/ml-20m.zip",
        # GroupLens publishes md5 cd245b17a1ae2cc31bb14903e1204af3 (.zip.md5); sha256 as others pin it
        "sha256:96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
        _ML_TERMS + "; redistribution allowed under the same terms", convert_movielens_csv,
        20_000_263, 138_493, 26_744, "https://grouplens.org/datasets/movielens/20m/"),
    "ml-latest-small": DatasetSpec(
        "ml-latest-small", "MovieLens latest-small (2018-09 snapshot): 0.5-5 star ratings, 9,742 movies, user tags",
        f"{_ML}/ml-latest-small.zip",
        # a rolling release: this pins the 2018-09-26 snapshot (978,202 bytes)
        "sha256:696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        _ML_TERMS + "; redistribution allowed under the same terms; a development set that may change",
        convert_movielens_csv, 100_836, 610, 9_724, "https://grouplens.org/datasets/movielens/latest/"),
    "lastfm-hetrec2011": DatasetSpec(
        "lastfm-hetrec2011", "Last.fm 2K (HetRec 2011): user-artist listening counts (rating = play count), "
        "artist names, friend graph", "https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
        "md5:296d61afe4e8632b173fc2dd3be20ce2",
        "research use; cite Cantador, Brusilovsky & Kuflik (HetRec 2011); Last.fm terms apply",
        convert_lastfm_hetrec, 92_834, 1_892, 17_632, "https://grouplens.org/datasets/hetrec-2011/"),
    "ciao": DatasetSpec(
        "ciao", "Ciao product reviews (Tang et al.): 1-5 star ratings with time, product category, helpfulness",
        "https://www.cse.msu.edu/~tangjili/datasetcode/ciao_with_rating_timestamp.zip", None,
        "research use; cite Tang, Gao & Liu (WSDM 2012)", convert_ciao, 36_065, 2_248, 16_861,
        "https://www.cse.msu.edu/~tangjili/trust.html"),
    "amazon-magazine-subscriptions": DatasetSpec(
        "amazon-magazine-subscriptions", "Amazon Review Data 2018, Magazine Subscriptions ratings only: very "
        "sparse 1-5 stars with day-resolution time",
        "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2/categoryFilesSmall/Magazine_Subscriptions.csv",
        None, "research purposes; cite Ni, Li & McAuley (EMNLP 2019)", convert_amazon_ratings,
        89_689, 72_098, 2_428, "https://nijianmo.github.io/amazon/"),
    "amazon-beauty": DatasetSpec(
        "amazon-beauty", "Amazon Beauty 5-core sequences as preprocessed for S3Rec (position, no timestamps), "
        "anonymous attribute ids", None, None, "S3Rec: " + _AMAZON_2014 + "; cite Zhou et al. (CIKM 2020)",
        None, 198_502, 22_363, 12_101, "https://github.com/RUCAIBox/CIKM2020-S3Rec"),
    "amazon-sports": DatasetSpec(
        "amazon-sports", "Amazon Sports & Outdoors 5-core sequences as preprocessed for S3Rec (position), "
        "anonymous attribute ids", None, None, "S3Rec: " + _AMAZON_2014 + "; cite Zhou et al. (CIKM 2020)",
        None, 296_337, 35_598, 18_357, "https://github.com/RUCAIBox/CIKM2020-S3Rec"),
    "lastfm-s3rec": DatasetSpec(
        "lastfm-s3rec", "Last.fm sequences as preprocessed for S3Rec (position), anonymous tag ids", None, None,
        "S3Rec repository has no LICENSE; cite Zhou et al. (CIKM 2020) and HetRec 2011", None,
        52_551, 1_090, 3_646, "https://github.com/RUCAIBox/CIKM2020-S3Rec"),
    "amazon-videogames-sasrec": DatasetSpec(
        "amazon-videogames-sasrec", "Amazon Video Games 5-core sequences as preprocessed for SASRec (position), "
        "no item metadata", None, None, "SASRec code Apache-2.0; cite Kang & McAuley (ICDM 2018); " + _AMAZON_2014,
        None, 287_107, 31_013, 23_715, "https://github.com/kang205/SASRec"),
}


# ---- finding a dataset -------------------------------------------------------------------------
def cache_root() -> Path:
    """Where downloads go: `$TOWERREC_CACHE`, else `~/.cache/towerrec`."""
    env = os.environ.get("TOWERREC_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "towerrec"


def _search_roots(data_dir: str | Path | None) -> list[tuple[str, Path]]:
    """Folders that hold dataset folders, in lookup order, each with how the user set it."""
    roots = [("data_dir", Path(data_dir).expanduser())] if data_dir is not None else []
    env = os.environ.get("TOWERREC_DATA", "")
    roots += [("$TOWERREC_DATA", Path(p).expanduser()) for p in env.split(os.pathsep) if p]
    return roots + [("cache", cache_root())]


def _is_dataset(folder: Path) -> bool:
    return is_dir(folder) and find_table(folder, "interactions") is not None


def find_local(name: str, data_dir: str | Path | None = None) -> Path | None:
    """The first `<root>/<name>` dataset folder in data_dir, $TOWERREC_DATA, the cache; else None."""
    for _, root in _search_roots(data_dir):
        if _is_dataset(root / name):
            return root / name
    return None


def resolve(name_or_path: str | Path, data_dir: str | Path | None = None, *, download: bool = False,
            verify: bool = True) -> Path:
    """A path to a dataset folder or table file.

    An existing path is returned as is. A name is looked up as `<root>/<name>` in `data_dir`, then
    `$TOWERREC_DATA` (os.pathsep-separated), then the cache; a known name that is nowhere local is
    downloaded into the cache only when `download=True` (verified unless `verify=False`).
    """
    path = Path(name_or_path).expanduser()
    if exists(path):
        return path
    name = str(name_or_path)
    if os.sep in name or name.lower().endswith(TABLE_SUFFIXES):
        raise DataError("no such file or folder", source=name,
                        expected="an existing file or folder, or a dataset name (see `towerrec datasets`)")
    local = find_local(name, data_dir)
    if local is not None:
        return local
    looked = ", ".join(f"{root / name} ({how})" for how, root in _search_roots(data_dir))
    spec = DATASETS.get(name)
    if spec is None:
        raise DataError(f"unknown dataset {name!r}: it is not a file or folder, not in {looked}, and not a "
                        f"known name ({', '.join([*DATASETS, SYNTHETIC])})")
    if download and spec.url:
        return download_dataset(name, verify=verify)
    how = (f"download it with download=True (CLI: --download) from {spec.url}" if spec.url else
           f"it has no public direct download ({spec.homepage}), so convert it yourself into a folder "
           f"with interactions.csv")
    raise DataError(f"dataset {name!r} was not found in {looked}; {how}, or point data_dir "
                    f"(CLI: --data DIR) or $TOWERREC_DATA at a folder that contains {name}/")


# ---- downloading -------------------------------------------------------------------------------
def _fetch(url: str, dest: Path, desc: str) -> dict[str, str]:
    """Stream `url` to `dest` with a progress bar; md5 and sha256 of the bytes."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "towerrec"})
        with urllib.request.urlopen(request, timeout=60) as resp, open(dest, "wb") as fh:
            size = resp.headers.get("Content-Length")
            total = -(-int(size) // CHUNK) if size else None
            for block in progress(iter(lambda: resp.read(CHUNK), b""), desc=f"download {desc}",
                                  total=total, unit="MiB"):
                fh.write(block)
                md5.update(block)
                sha.update(block)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DataError(f"download failed: {exc}", source=url) from None
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def _check(spec: DatasetSpec, digests: dict[str, str], source: str) -> None:
    algorithm, expected = spec.checksum.split(":", 1)  # type: ignore[union-attr]
    if digests[algorithm] != expected.lower():
        raise DataError(f"checksum mismatch: {algorithm} is {digests[algorithm]}", source=source,
                        expected=f"{expected} as published for {spec.name} (a corrupt download or a changed "
                                 f"upstream file; nothing was kept)")


def convert_archive(name: str, archive: str | Path, out_dir: str | Path, *, verify: bool = True) -> Path:
    """Convert an archive downloaded by hand (e.g. behind a proxy) into a dataset folder at `out_dir`."""
    spec = DATASETS[name]
    if spec.convert is None:
        raise DataError(f"dataset {name!r} has no converter", expected="a folder already in the folder convention")
    archive, out = Path(archive), Path(out_dir)
    if verify and spec.checksum:
        algorithm = spec.checksum.split(":", 1)[0]
        _check(spec, {algorithm: file_digest(archive, algorithm)}, str(archive))
    out.mkdir(parents=True, exist_ok=True)
    try:
        spec.convert(archive, out)
    except DataError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise DataError(f"cannot convert: {exc}", source=str(archive),
                        expected=f"the official {name} archive from {spec.url}") from None
    return out


def _provenance(spec: DatasetSpec, digests: dict[str, str], verified: bool) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    check = (f"verified against {spec.checksum}" if verified and spec.checksum else
             "NOT verified (verify=False / --no-verify)")
    return (f"# {spec.name}\n\n{spec.description}\n\n## Source\n{spec.url}, downloaded {when} and converted by "
            f"towerrec (`{spec.convert.__name__}`).\nArchive md5 {digests['md5']}, sha256 {digests['sha256']}; "
            f"{check}.\n\n## License / terms\n{spec.license}. See {spec.homepage}.\n")


def download_dataset(name: str, *, verify: bool = True) -> Path:
    """Download `name` into `cache_root()/name`: fetch, verify, convert, then move into place atomically."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}", expected=f"one of {', '.join(DATASETS)}")
    spec = DATASETS[name]
    if spec.url is None or spec.convert is None:
        raise DataError(f"dataset {name!r} has no public direct download ({spec.homepage})",
                        expected="a local folder in data_dir or $TOWERREC_DATA")
    if verify and spec.checksum is None:
        raise DataError(f"no published checksum is known for {name!r}, so its download cannot be verified",
                        source=spec.url, expected="verify=False (CLI: --no-verify) to download it unverified")
    root = cache_root()
    target = root / name
    if target.exists():
        if _is_dataset(target):
            return target
        raise DataError("exists but holds no interactions table", source=str(target),
                        expected="remove the folder and download again")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        raw = tmp / (spec.url.rsplit("/", 1)[-1] or "archive")
        digests = _fetch(spec.url, raw, name)
        if verify:
            _check(spec, digests, spec.url)
        out = convert_archive(name, raw, tmp / name, verify=False)
        (out / "PROVENANCE.md").write_text(_provenance(spec, digests, verify))
        try:
            out.rename(target)
        except OSError:  # another process finished first
            if not _is_dataset(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def list_datasets(data_dir: str | Path | None = None) -> list[dict]:
    """One row per known or locally found dataset, for `towerrec datasets`."""
    rows = []
    for spec in DATASETS.values():
        local = find_local(spec.name, data_dir)
        where = (str(local) if local else f"not found (download: {spec.url})" if spec.url else
                 f"not found (no public download; see {spec.homepage})")
        rows.append({"name": spec.name, "description": spec.description, "rows": spec.rows, "users": spec.users,
                     "items": spec.items, "location": where, "license": spec.license})
    local = find_local(SYNTHETIC, data_dir)
    rows.append({"name": SYNTHETIC, "description": "seeded synthetic log: Zipf popularity, taste clusters, "
                 "sequential drift, item/user features", "rows": None, "users": None, "items": None,
                 "location": str(local) if local else "generated on demand", "license": "none needed"})
    known = {r["name"] for r in rows}
    for how, root in _search_roots(data_dir):
        for folder in list_dir(root) if is_dir(root) else []:
            if folder.name not in known and _is_dataset(folder):
                known.add(folder.name)
                rows.append({"name": folder.name, "description": f"local folder ({how})", "rows": None,
                             "users": None, "items": None, "location": str(folder), "license": "see the folder"})
    return rows


# ---- the front door ----------------------------------------------------------------------------
def load_dataset(source: str | Path | pd.DataFrame, options: LoadOptions = LoadOptions(), *,
                 items: pd.DataFrame | None = None, users: pd.DataFrame | None = None,
                 data_dir: str | Path | None = None, item_kinds: dict[str, str] | None = None,
                 user_kinds: dict[str, str] | None = None, download: bool = False,
                 verify: bool = True) -> Dataset:
    """Load a dataset name, dataset folder, single CSV/TSV/Parquet file or DataFrame.

    Items listed in `items.*` (or the `items` DataFrame) without interactions stay in the catalogue
    (cold items) unless a k-core filter redefines it; every filter and every side-table mismatch is
    in `report`. `item_kinds`/`user_kinds` override the inferred feature kinds (`towerrec.data.features`).
    """
    if isinstance(source, pd.DataFrame):
        return Dataset.from_frame(source, items=items, users=users, options=options, item_kinds=item_kinds,
                                  user_kinds=user_kinds)
    if items is not None or users is not None:
        raise DataError(f"items= and users= go with a DataFrame of interactions, not {str(source)!r}",
                        expected="Dataset.from_frame(log, items=..., users=...), or items.csv/users.csv "
                                 "inside the dataset folder")
    if str(source) == SYNTHETIC and not exists(Path(source)) and find_local(SYNTHETIC, data_dir) is None:
        return synthetic(**DEFAULT_SIZE, options=options)
    path = resolve(source, data_dir, download=download, verify=verify)
    return Dataset.from_path(path, options, item_kinds=item_kinds, user_kinds=user_kinds)
