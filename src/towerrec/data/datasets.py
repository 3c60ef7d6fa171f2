"""Named public datasets and the dataset-folder loader.

A dataset is a folder (the convention of ../shared/data/README.md): `interactions.csv|.csv.gz|.parquet`
with `user_id,item_id[,rating][,timestamp|position]`, optional `items.*` and `users.*` feature tables
(multi-valued fields `|`-separated). `load_dataset` takes a name, such a folder, a single table file or
a DataFrame and returns one `Dataset`: interactions with ids mapped once, item/user feature tables
aligned to the id maps, the raw item table for titles, and a `LoadReport` saying what every filter
removed.

Names resolve locally first (`data_dir`, `$TOWERREC_DATA`, the cache). Only an explicit download
fetches the official archive, checks its published checksum and converts it into the folder
convention, so a run never reaches the network by surprise.

>>> ds = load_dataset("ml-100k", data_dir="../shared/data")            # doctest: +SKIP
>>> ds.interactions.n_users, ds.titles([0])                            # doctest: +SKIP
(943, ['Kolya (1996)'])
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from towerrec.data.features import FeatureTable
from towerrec.data.interactions import Interactions
from towerrec.data.load import (ITEM_COLUMNS, USER_COLUMNS, LoadOptions, LoadReport, load_interactions,
                                read_table)
from towerrec.data.validate import Where, unique_ids
from towerrec.errors import DataError
from towerrec.progress import progress

TABLE_ORDER = (".parquet", ".pq", ".csv", ".csv.gz", ".tsv", ".tsv.gz")
TITLE_COLUMNS = ("title", "name", "item_name", "product_name")
SYNTHETIC = "synthetic"
_CHUNK = 1 << 20  # download block: 1 MiB, also the progress bar's unit


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


# ---- converters: raw archive -> folder convention ----------------------------------------------
def _member(zf: zipfile.ZipFile, basename: str) -> str:
    """The archive member called `basename`, in whatever folder the archive puts it."""
    for name in zf.namelist():
        if name == basename or name.endswith("/" + basename):
            return name
    raise DataError(f"the archive has no member {basename!r}", source=zf.filename,
                    expected=f"the official archive layout (members: {zf.namelist()[:8]})")


def _write(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False)


def _copy_csv(zf: zipfile.ZipFile, member: str, expected: str, header: str, dest: Path) -> None:
    """Stream a CSV out of the archive renaming its header: 20M rows cost no memory and no parsing."""
    with zf.open(member) as src, open(dest, "wb") as out:
        first = src.readline().decode("utf-8").strip()
        if first != expected:
            raise DataError(f"unexpected header {first!r} in {member}", source=zf.filename, expected=expected)
        out.write((header + "\n").encode())
        shutil.copyfileobj(src, out, _CHUNK)


def _pipe_join(frame: pd.DataFrame, key: str, value: str) -> pd.Series:
    """Distinct values per key, pipe-joined in order of first appearance (tags, categories)."""
    clean = frame[[key, value]].dropna()
    clean = clean.assign(**{value: clean[value].astype(str).str.strip().str.replace("|", "/", regex=False)})
    clean = clean[clean[value] != ""].drop_duplicates()
    return clean.groupby(key, sort=False)[value].agg("|".join)


def convert_ml100k(archive: Path, out: Path) -> None:
    """ml-100k.zip: tab-separated u.data, `|`-separated latin-1 u.item (19 genre flags) and u.user."""
    with zipfile.ZipFile(archive) as zf:
        ratings = pd.read_csv(zf.open(_member(zf, "u.data")), sep="\t", header=None, dtype=str,
                              names=["user_id", "item_id", "rating", "timestamp"])
        genres = pd.read_csv(zf.open(_member(zf, "u.genre")), sep="|", header=None, encoding="latin-1",
                             names=["genre", "code"]).dropna().sort_values("code")["genre"].tolist()
        items = pd.read_csv(zf.open(_member(zf, "u.item")), sep="|", header=None, encoding="latin-1",
                            dtype=str, names=["item_id", "title", "release_date", "video_date", "imdb_url",
                                              *genres])
        users = pd.read_csv(zf.open(_member(zf, "u.user")), sep="|", header=None, dtype=str,
                            names=["user_id", "age", "gender", "occupation", "zip_code"])
    flags = items[genres].fillna("0").astype(int)
    # flags [n, 19] 0/1 @ "name|" strings: each row concatenates the names of its set flags
    items["genres"] = flags.dot(pd.Series([g + "|" for g in genres], index=genres)).str.rstrip("|")
    items["year"] = pd.to_datetime(items["release_date"], format="%d-%b-%Y", errors="coerce").dt.year.astype("Int64")
    _write(ratings, out / "interactions.csv")
    _write(items[["item_id", "title", "release_date", "year", "genres", "imdb_url"]], out / "items.csv")
    _write(users, out / "users.csv")


def _read_dat(zf: zipfile.ZipFile, basename: str, names: list[str]) -> pd.DataFrame:
    """ml-1m `::`-separated latin-1 .dat: swap `::` for a tab so the C parser reads it (10x faster)."""
    raw = zf.read(_member(zf, basename)).replace(b"::", b"\t")
    return pd.read_csv(io.BytesIO(raw), sep="\t", header=None, names=names, dtype=str, encoding="latin-1",
                       quoting=3)  # QUOTE_NONE: titles contain quote marks


def convert_ml1m(archive: Path, out: Path) -> None:
    """ml-1m.zip: ratings.dat, movies.dat (genres already `|`-separated), users.dat (coded age/occupation)."""
    with zipfile.ZipFile(archive) as zf:
        ratings = _read_dat(zf, "ratings.dat", ["user_id", "item_id", "rating", "timestamp"])
        movies = _read_dat(zf, "movies.dat", ["item_id", "title", "genres"])
        users = _read_dat(zf, "users.dat", ["user_id", "gender", "age", "occupation", "zip_code"])
    movies["year"] = movies["title"].str.extract(r"\((\d{4})\)\s*$", expand=False)
    _write(ratings, out / "interactions.csv")
    _write(movies[["item_id", "title", "year", "genres"]], out / "items.csv")
    _write(users, out / "users.csv")


def convert_movielens_csv(archive: Path, out: Path) -> None:
    """ml-20m / ml-latest-small: ratings.csv, movies.csv, links.csv, tags.csv (UTF-8 CSVs).

    items.csv gets `year` (from the title), IMDb/TMDb ids and the movie's distinct user tags.
    """
    with zipfile.ZipFile(archive) as zf:
        _copy_csv(zf, _member(zf, "ratings.csv"), "userId,movieId,rating,timestamp",
                  "user_id,item_id,rating,timestamp", out / "interactions.csv")
        movies = pd.read_csv(zf.open(_member(zf, "movies.csv")), dtype=str)
        links = pd.read_csv(zf.open(_member(zf, "links.csv")), dtype=str)
        tags = pd.read_csv(zf.open(_member(zf, "tags.csv")), dtype=str)
        _copy_csv(zf, _member(zf, "tags.csv"), "userId,movieId,tag,timestamp",
                  "user_id,item_id,tag,timestamp", out / "tags.csv")
    items = movies.rename(columns={"movieId": "item_id"})
    items["year"] = items["title"].str.extract(r"\((\d{4})\)\s*$", expand=False)
    links = links.rename(columns={"movieId": "item_id", "imdbId": "imdb_id", "tmdbId": "tmdb_id"})
    items = items.merge(links, on="item_id", how="left")
    items["tags"] = items["item_id"].map(_pipe_join(tags, "movieId", "tag"))
    _write(items[["item_id", "title", "year", "genres", "imdb_id", "tmdb_id", "tags"]], out / "items.csv")


def convert_lastfm_hetrec(archive: Path, out: Path) -> None:
    """hetrec2011-lastfm-2k.zip: tab-separated user_artists.dat (weight = listening count), artists.dat."""
    tsv = {"sep": "\t", "dtype": str, "quoting": 3, "encoding": "utf-8", "encoding_errors": "replace"}
    with zipfile.ZipFile(archive) as zf:
        plays = pd.read_csv(zf.open(_member(zf, "user_artists.dat")), **tsv)
        artists = pd.read_csv(zf.open(_member(zf, "artists.dat")), **tsv)
        friends = pd.read_csv(zf.open(_member(zf, "user_friends.dat")), **tsv)
    _write(plays.set_axis(["user_id", "item_id", "rating"], axis=1), out / "interactions.csv")
    _write(artists.iloc[:, :3].set_axis(["item_id", "title", "url"], axis=1), out / "items.csv")
    _write(friends.set_axis(["user_id", "friend_id"], axis=1), out / "user_friends.csv")


def convert_ciao(archive: Path, out: Path) -> None:
    """ciao_with_rating_timestamp.zip: MATLAB `rating` matrix [n, 6] (user, product, category, rating,
    helpfulness, unix time)."""
    import scipy.io

    with zipfile.ZipFile(archive) as zf:
        mat = scipy.io.loadmat(io.BytesIO(zf.read(_member(zf, "rating_with_timestamp.mat"))))["rating"]
    cols = ["user_id", "item_id", "category_id", "rating", "helpfulness", "timestamp"]
    frame = pd.DataFrame(np.asarray(mat).round().astype(np.int64), columns=cols)
    _write(frame[["user_id", "item_id", "rating", "timestamp", "helpfulness"]], out / "interactions.csv")
    cats = _pipe_join(frame, "item_id", "category_id")
    _write(pd.DataFrame({"item_id": cats.index, "category_id": cats.to_numpy()}), out / "items.csv")


def convert_amazon_ratings(raw: Path, out: Path) -> None:
    """Amazon Review Data (2018) "ratings only" CSV: headerless item, user, rating, unix time."""
    frame = pd.read_csv(raw, header=None, names=["item_id", "user_id", "rating", "timestamp"], dtype=str)
    _write(frame[["user_id", "item_id", "rating", "timestamp"]], out / "interactions.csv")


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


def _find_table(folder: Path, stem: str) -> Path | None:
    """`folder/stem.<csv|csv.gz|parquet|...>`; two candidates are ambiguous and an error."""
    found = [folder / (stem + s) for s in TABLE_ORDER if (folder / (stem + s)).is_file()]
    if len(found) > 1:
        raise DataError(f"more than one {stem} table: {[p.name for p in found]}", source=str(folder),
                        expected="exactly one, so it is clear which one is used")
    return found[0] if found else None


def _is_dataset(folder: Path) -> bool:
    return folder.is_dir() and _find_table(folder, "interactions") is not None


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
    if path.exists():
        return path
    name = str(name_or_path)
    if os.sep in name or name.lower().endswith(tuple(TABLE_ORDER) + (".tab",)):
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
            total = -(-int(size) // _CHUNK) if size else None
            for block in progress(iter(lambda: resp.read(_CHUNK), b""), desc=f"download {desc}",
                                  total=total, unit="MiB"):
                fh.write(block)
                md5.update(block)
                sha.update(block)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DataError(f"download failed: {exc}", source=url) from None
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.new(algorithm, usedforsecurity=False)  # a checksum, not security: allowed under FIPS
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


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
        for folder in sorted(root.iterdir()) if root.is_dir() else []:
            if folder.name not in known and _is_dataset(folder):
                known.add(folder.name)
                rows.append({"name": folder.name, "description": f"local folder ({how})", "rows": None,
                             "users": None, "items": None, "location": str(folder), "license": "see the folder"})
    return rows


# ---- loading -----------------------------------------------------------------------------------
@dataclass
class Dataset:
    """Interactions plus aligned side information, and a report of how they were loaded.

    `item_features`/`user_features` are aligned to `interactions.item_map`/`user_map`; `items`/`users`
    are the raw tables (id column renamed to `item_id`/`user_id`) for titles and display.
    `data_sha256` identifies the exact interaction data, for reproducibility manifests.
    """

    name: str
    path: Path | None
    interactions: Interactions
    item_features: FeatureTable | None = None
    user_features: FeatureTable | None = None
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    report: LoadReport = field(default_factory=lambda: LoadReport(source=""))
    data_sha256: str | None = None

    @property
    def n_cold_items(self) -> int:
        """Catalogue items (from items.*) that have no interaction."""
        return int(np.count_nonzero(self.interactions.item_counts() == 0))

    def checksum(self) -> str | None:
        return self.data_sha256

    def titles(self, item_idx: np.ndarray | list[int]) -> list[str]:
        """A display title per item index: the items table's title/name column, else the item id."""
        ids = self.interactions.item_map.ids[np.asarray(item_idx, dtype=np.int64)]
        col = _title_column(self.items)
        if col is None:
            return [str(i) for i in ids]
        lookup = pd.Series(self.items[col].to_numpy(), index=self.items["item_id"].astype(str))  # type: ignore[index]
        titles = lookup.reindex(pd.Index(ids.astype(str)))
        return [str(t) if isinstance(t, str) and t else str(i) for t, i in zip(titles.tolist(), ids)]


def _title_column(items: pd.DataFrame | None) -> str | None:
    if items is None:
        return None
    lower = {c.lower(): c for c in items.columns}
    return next((lower[c] for c in TITLE_COLUMNS if c in lower), None)


def _id_column(columns: list[str], wanted: str | None, candidates: tuple[str, ...], path: Path) -> str:
    if wanted and wanted in columns:
        return wanted
    for c in candidates:
        if c in columns:
            return c
    raise DataError(f"no id column found among {columns}", source=str(path),
                    expected=f"one of {list(candidates)}, named as in the interactions file")


def _read_side_table(path: Path, wanted: str | None, candidates: tuple[str, ...], role: str) -> pd.DataFrame:
    """An items/users table with validated ids (non-blank, unique) in a column renamed `<role>_id`."""
    table = read_table(path, string_columns=tuple(c for c in (wanted,) if c) + candidates)
    if table.num_rows == 0:
        raise DataError("the table has a header but no rows", source=str(path), expected=f"one row per {role}")
    id_col = _id_column(table.column_names, wanted, candidates, path)
    frame = table.to_pandas()
    where = Where(str(path), is_file=True)
    ids = frame[id_col].astype("string")
    blank = (ids.isna() | (ids.str.strip() == "")).to_numpy(dtype=bool)
    if blank.any():
        raise where.error("blank or missing ids", column=id_col, positions=np.flatnonzero(blank),
                          expected="a non-empty id on every row")
    frame[id_col] = ids.astype(object)
    unique_ids(frame, id_col, where)
    return frame.rename(columns={id_col: f"{role}_id"})


def _frame_sha256(frame: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()


def load_dataset(source: str | Path | pd.DataFrame, options: LoadOptions = LoadOptions(), *,
                 data_dir: str | Path | None = None, item_kinds: dict[str, str] | None = None,
                 user_kinds: dict[str, str] | None = None, download: bool = False,
                 verify: bool = True) -> Dataset:
    """Load a dataset name, dataset folder, single CSV/TSV/Parquet file or DataFrame.

    Items listed in `items.*` without interactions stay in the catalogue (cold items) unless a
    k-core filter redefines it; every filter and every side-table mismatch is in `report`.
    `item_kinds`/`user_kinds` override the inferred feature kinds (`towerrec.data.features`).
    """
    if isinstance(source, pd.DataFrame):
        inter, report = load_interactions(source, options)
        return Dataset("DataFrame", None, inter, report=report, data_sha256=_frame_sha256(source))
    if str(source) == SYNTHETIC and not Path(source).exists() and find_local(SYNTHETIC, data_dir) is None:
        from towerrec.data.synthetic import DEFAULT_SIZE, synthetic

        return synthetic(**DEFAULT_SIZE, options=options)
    path = resolve(source, data_dir, download=download, verify=verify)
    if path.is_file():
        inter, report = load_interactions(path, options)
        return Dataset(path.name.split(".")[0], path, inter, report=report, data_sha256=file_digest(path))
    inter_path = _find_table(path, "interactions")
    if inter_path is None:
        raise DataError("the folder has no interactions table", source=str(path),
                        expected=f"interactions{'|'.join(TABLE_ORDER)} (see the dataset folder convention)")
    items_path, users_path = _find_table(path, "items"), _find_table(path, "users")
    items = _read_side_table(items_path, options.item_col, ITEM_COLUMNS, "item") if items_path else None
    users = _read_side_table(users_path, options.user_col, USER_COLUMNS, "user") if users_path else None
    catalogue = None if items is None else items["item_id"].to_numpy(dtype=object)
    inter, report = load_interactions(inter_path, options, item_ids=catalogue)
    item_features = user_features = None
    if items is not None:
        item_features = FeatureTable.from_frame(items, inter.item_map, id_col="item_id", source=str(items_path),
                                                kinds=item_kinds, is_file=True)
        n_cold = int(np.count_nonzero(inter.item_counts() == 0))
        report.notes.append(f"{items_path.name}: {n_cold:,} of {inter.n_items:,} catalogue items have no "
                            f"interactions (kept as cold items)")
        report.notes.append(_side_note(items_path.name, item_features, "item"))
    if users is not None:
        user_features = FeatureTable.from_frame(users, inter.user_map, id_col="user_id", source=str(users_path),
                                                kinds=user_kinds, is_file=True)
        report.notes.append(_side_note(users_path.name, user_features, "user"))
    return Dataset(path.name, path, inter, item_features, user_features, items, users, report,
                   data_sha256=file_digest(inter_path))


def _side_note(file: str, table: FeatureTable, role: str) -> str:
    return (f"{file}: {table.n_without_row:,} {role}s with interactions have no feature row (defaults used); "
            f"{table.n_unused_rows:,} rows are for {role}s not in the interactions (ignored)")
