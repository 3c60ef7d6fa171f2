"""Converters: an official public archive -> a dataset folder (`interactions.csv`, `items.csv`, `users.csv`).

One function per archive format, each `convert(archive, out_dir)`; `towerrec.data.registry` says which
dataset uses which. They only reshape files: ids stay the source's strings, nothing is filtered.
"""
from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from towerrec.errors import DataError

CHUNK = 1 << 20  # 1 MiB: the copy block here, the download block and progress unit in the registry


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
        shutil.copyfileobj(src, out, CHUNK)


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

