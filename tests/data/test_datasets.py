"""Dataset registry, resolve order, verified download from a local file:// archive, converters on tiny
hand-made raw archives, and load_dataset on real folders."""
from __future__ import annotations

import hashlib
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from shared_data import shared_dataset

from towerrec.data.registry import DATASETS, convert_archive, list_datasets, load_dataset, resolve
from towerrec.data.load import LoadOptions
from towerrec.errors import DataError

GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Never touch the real cache or $TOWERREC_DATA."""
    monkeypatch.setenv("TOWERREC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TOWERREC_DATA", raising=False)


def folder(root: Path, name: str, rows: str = "u1,i1\n") -> Path:
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "interactions.csv").write_text("user_id,item_id\n" + rows)
    return path


def make_zip(path: Path, members: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def ml100k_zip(path: Path) -> Path:
    flags = ["0"] * 19
    toy = flags.copy()
    toy[3] = toy[4] = toy[5] = "1"   # Animation, Children's, Comedy
    cafe = flags.copy()
    cafe[8] = "1"                     # Drama
    items = (f"1|Toy Story (1995)|01-Jan-1995||http://imdb/1|{'|'.join(toy)}\n"
             f"2|Café Society (1995)|02-Feb-1996||http://imdb/2|{'|'.join(cafe)}\n"
             f"3|unknown||||{'|'.join(['1'] + flags[1:])}\n")
    return make_zip(path, {
        "ml-100k/u.data": "1\t1\t5\t881250949\n2\t1\t3\t881250950\n2\t2\t4\t881250951\n",
        "ml-100k/u.item": items.encode("latin-1"),
        "ml-100k/u.genre": "".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)) + "\n",
        "ml-100k/u.user": "1|24|M|technician|85711\n2|53|F|other|94043\n",
    })


def use_archive(monkeypatch, name: str, archive: Path, checksum: str | None) -> None:
    monkeypatch.setitem(DATASETS, name, replace(DATASETS[name], url=archive.as_uri(), checksum=checksum))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- registry ---------------------------------------------------------------------------------
def test_registry_is_complete_and_well_formed():
    names = {"ml-100k", "ml-1m", "ml-20m", "ml-latest-small", "amazon-beauty", "amazon-sports",
             "lastfm-hetrec2011", "lastfm-s3rec", "ciao", "amazon-videogames-sasrec", "amazon-magazine-subscriptions"}
    assert names <= set(DATASETS)
    for name, spec in DATASETS.items():
        assert spec.name == name and spec.description and spec.license
        assert (spec.url is None) == (spec.convert is None)
        if spec.checksum:
            algorithm, digest = spec.checksum.split(":")
            assert len(digest) == {"md5": 32, "sha256": 64}[algorithm] and int(digest, 16) >= 0
    for name in ("ml-100k", "ml-1m", "ml-20m", "ml-latest-small"):
        assert DATASETS[name].checksum and DATASETS[name].url.startswith("https://files.grouplens.org/")


# ---- resolve ----------------------------------------------------------------------------------
def test_existing_paths_are_returned_as_is(tmp_path):
    data = folder(tmp_path, "anything")
    assert resolve(data) == data and resolve(data / "interactions.csv") == data / "interactions.csv"


def test_resolve_order_data_dir_then_env_then_cache(tmp_path, monkeypatch):
    a, b, c = (folder(tmp_path / root, "ml-100k") for root in ("a", "b", "cache"))
    monkeypatch.setenv("TOWERREC_DATA", str(tmp_path / "b"))
    assert resolve("ml-100k", tmp_path / "a") == a
    assert resolve("ml-100k", tmp_path / "elsewhere") == b
    monkeypatch.delenv("TOWERREC_DATA")
    assert resolve("ml-100k") == c
    # a folder without an interactions table does not count
    (b / "interactions.csv").unlink()
    monkeypatch.setenv("TOWERREC_DATA", str(tmp_path / "b"))
    assert resolve("ml-100k") == c


def test_env_may_list_several_roots(tmp_path, monkeypatch):
    second = folder(tmp_path / "two", "mine")
    monkeypatch.setenv("TOWERREC_DATA", f"{tmp_path / 'one'}:{tmp_path / 'two'}")
    assert resolve("mine") == second


def test_not_found_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as info:
        resolve("ml-1m", tmp_path / "d")
    msg = str(info.value)
    assert str(tmp_path / "d" / "ml-1m") in msg and "$TOWERREC_DATA" in msg and str(tmp_path / "cache") in msg
    assert "https://files.grouplens.org/datasets/movielens/ml-1m.zip" in msg and "--download" in msg
    with pytest.raises(DataError, match="no public direct download"):
        resolve("amazon-beauty")
    with pytest.raises(DataError, match=r"unknown dataset 'nope'.*ml-100k.*synthetic"):
        resolve("nope")
    with pytest.raises(DataError, match="no such file or folder"):
        resolve(str(tmp_path / "missing.csv"))


# ---- download ---------------------------------------------------------------------------------
def test_download_verifies_converts_and_caches(tmp_path, monkeypatch):
    archive = ml100k_zip(tmp_path / "ml-100k.zip")
    use_archive(monkeypatch, "ml-100k", archive, "sha256:" + sha256(archive))
    with pytest.raises(DataError):  # no download unless asked
        resolve("ml-100k")
    path = resolve("ml-100k", download=True)
    assert path == tmp_path / "cache" / "ml-100k"
    assert sorted(p.name for p in path.iterdir()) == ["PROVENANCE.md", "interactions.csv", "items.csv", "users.csv"]
    assert "verified against sha256:" in (path / "PROVENANCE.md").read_text()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["ml-100k"]  # no temp folder left
    archive.unlink()  # found in the cache from now on
    ds = load_dataset("ml-100k")
    assert (len(ds.interactions), ds.interactions.n_users, ds.interactions.n_items) == (3, 2, 3)
    assert ds.n_cold_items == 1


def test_download_with_md5_checksum(tmp_path, monkeypatch):
    archive = make_zip(tmp_path / "lastfm.zip", {
        "user_artists.dat": "userID\tartistID\tweight\n2\t51\t13883\n2\t52\t11690\n",
        "artists.dat": "id\tname\turl\tpictureURL\n51\tDuran Duran\thttp://a\thttp://p\n52\tMorcheeba\thttp://b\t\n",
        "user_friends.dat": "userID\tfriendID\n2\t275\n"})
    use_archive(monkeypatch, "lastfm-hetrec2011", archive, "md5:" + hashlib.md5(archive.read_bytes()).hexdigest())
    ds = load_dataset("lastfm-hetrec2011", download=True)
    assert ds.titles([0, 1]) == ["Duran Duran", "Morcheeba"] and ds.interactions.weight.tolist() == [13883, 11690]


def test_checksum_mismatch_keeps_nothing(tmp_path, monkeypatch):
    archive = ml100k_zip(tmp_path / "ml-100k.zip")
    use_archive(monkeypatch, "ml-100k", archive, "sha256:" + "0" * 64)
    with pytest.raises(DataError) as info:
        resolve("ml-100k", download=True)
    msg = str(info.value)
    assert "checksum mismatch" in msg and sha256(archive) in msg and "0" * 64 in msg and archive.as_uri() in msg
    assert list((tmp_path / "cache").iterdir()) == []


def test_unknown_checksum_needs_no_verify(tmp_path, monkeypatch):
    raw = tmp_path / "Magazine_Subscriptions.csv"
    raw.write_text("B00005N7P0,AH2IFH762VY5U,5.0,1005177600\nB00005N7P0,AOSFI0JEYU4XM,4.0,1004486400\n")
    use_archive(monkeypatch, "amazon-magazine-subscriptions", raw, None)
    with pytest.raises(DataError, match="cannot be verified.*--no-verify"):
        resolve("amazon-magazine-subscriptions", download=True)
    path = resolve("amazon-magazine-subscriptions", download=True, verify=False)
    assert (path / "interactions.csv").read_text().splitlines() == [
        "user_id,item_id,rating,timestamp", "AH2IFH762VY5U,B00005N7P0,5.0,1005177600",
        "AOSFI0JEYU4XM,B00005N7P0,4.0,1004486400"]
    assert "NOT verified" in (path / "PROVENANCE.md").read_text()


def test_unreachable_url_is_a_data_error(tmp_path, monkeypatch):
    use_archive(monkeypatch, "ml-100k", tmp_path / "gone.zip", "sha256:" + "0" * 64)
    with pytest.raises(DataError, match="download failed"):
        resolve("ml-100k", download=True)
    assert list((tmp_path / "cache").iterdir()) == []


# ---- converters -------------------------------------------------------------------------------
def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_convert_ml100k(tmp_path):
    out = convert_archive("ml-100k", ml100k_zip(tmp_path / "a.zip"), tmp_path / "out", verify=False)
    items = read(out / "items.csv")
    assert list(items.columns) == ["item_id", "title", "release_date", "year", "genres", "imdb_url"]
    assert items.iloc[0].tolist() == ["1", "Toy Story (1995)", "01-Jan-1995", "1995", "Animation|Children's|Comedy",
                                      "http://imdb/1"]
    assert items.iloc[1]["title"] == "Café Society (1995)" and items.iloc[1]["year"] == "1996"  # latin-1 decoded
    assert items.iloc[2][["year", "genres"]].tolist() == ["", "unknown"]
    assert read(out / "interactions.csv").iloc[2].tolist() == ["2", "2", "4", "881250951"]
    assert read(out / "users.csv").columns.tolist() == ["user_id", "age", "gender", "occupation", "zip_code"]


def test_convert_ml1m(tmp_path):
    archive = make_zip(tmp_path / "ml-1m.zip", {
        "ml-1m/ratings.dat": "1::1193::5::978300760\n2::260::4::978300761\n",
        "ml-1m/movies.dat": "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
                            "260::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi\n"
                            "999::Amélie \"Le\" Film (2001)::Comedy|Romance\n".encode("latin-1"),
        "ml-1m/users.dat": "1::F::1::10::48067\n2::M::56::16::70072\n"})
    out = convert_archive("ml-1m", archive, tmp_path / "out", verify=False)
    items = read(out / "items.csv")
    assert items["title"].tolist()[1:] == ["Star Wars: Episode IV - A New Hope (1977)", 'Amélie "Le" Film (2001)']
    assert items["year"].tolist() == ["1975", "1977", "2001"] and items["genres"][1] == "Action|Sci-Fi"
    assert read(out / "interactions.csv").iloc[1].tolist() == ["2", "260", "4", "978300761"]
    ds = load_dataset(out)
    assert ds.n_cold_items == 1 and ds.user_features.columns["gender"].kind == "categorical"


def test_convert_movielens_csv(tmp_path):
    archive = make_zip(tmp_path / "ml-latest-small.zip", {
        "ml-latest-small/ratings.csv": "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,0.5,964981247\n",
        "ml-latest-small/movies.csv": 'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n'
                                      '3,"American President, The (1995)",Comedy\n'
                                      '4,Unrated (2018),(no genres listed)\n',
        "ml-latest-small/links.csv": "movieId,imdbId,tmdbId\n1,0114709,862\n3,0112346,9087\n4,0000001,\n",
        "ml-latest-small/tags.csv": "userId,movieId,tag,timestamp\n2,1,pixar,1\n3,1,fun,2\n4,1,pixar,3\n5,3,a|b,4\n"})
    out = convert_archive("ml-latest-small", archive, tmp_path / "out", verify=False)
    assert (out / "interactions.csv").read_text().splitlines()[0] == "user_id,item_id,rating,timestamp"
    assert (out / "tags.csv").read_text().splitlines()[0] == "user_id,item_id,tag,timestamp"
    items = read(out / "items.csv")
    assert items.columns.tolist() == ["item_id", "title", "year", "genres", "imdb_id", "tmdb_id", "tags"]
    assert items.iloc[0].tolist() == ["1", "Toy Story (1995)", "1995", "Adventure|Animation", "0114709", "862",
                                      "pixar|fun"]  # imdb id keeps its zeros; tags distinct, in order
    assert items.iloc[1][["title", "tags"]].tolist() == ["American President, The (1995)", "a/b"]
    ds = load_dataset(out)
    assert ds.n_cold_items == 1 and ds.interactions.rating.tolist() == [4.0, 0.5]


def test_convert_ciao_from_mat(tmp_path):
    import io

    import scipy.io

    rows = np.array([[1, 10, 3, 5, 2, 1298876400], [1, 11, 4, 4, 1, 1288940400], [2, 10, 3, 1, 0, 1000000000],
                     [2, 12, 4, 2, 3, 1000000100]], dtype=float)
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"rating": rows})
    archive = make_zip(tmp_path / "ciao.zip", {"ciao_with_rating_timestamp/rating_with_timestamp.mat": buf.getvalue()})
    out = convert_archive("ciao", archive, tmp_path / "out", verify=False)
    assert read(out / "interactions.csv").iloc[0].tolist() == ["1", "10", "5", "1298876400", "2"]
    assert read(out / "items.csv").values.tolist() == [["10", "3"], ["11", "4"], ["12", "4"]]


def test_converter_errors_name_the_archive(tmp_path):
    archive = make_zip(tmp_path / "wrong.zip", {"ml-100k/u.data": "1\t1\t5\t1\n"})
    with pytest.raises(DataError, match=r"wrong.zip.*no member 'u.genre'"):
        convert_archive("ml-100k", archive, tmp_path / "out", verify=False)
    (tmp_path / "notzip.zip").write_text("plain text")
    with pytest.raises(DataError, match=r"notzip.zip: cannot convert"):
        convert_archive("ml-1m", tmp_path / "notzip.zip", tmp_path / "out", verify=False)
    with pytest.raises(DataError, match="checksum mismatch"):
        convert_archive("ml-1m", tmp_path / "notzip.zip", tmp_path / "out")


# ---- listing ----------------------------------------------------------------------------------
def test_list_datasets(tmp_path):
    folder(tmp_path / "data", "ml-1m")
    folder(tmp_path / "data", "my-own")
    rows = {r["name"]: r for r in list_datasets(tmp_path / "data")}
    assert set(DATASETS) | {"synthetic", "my-own"} == set(rows)
    assert rows["ml-1m"]["location"] == str(tmp_path / "data" / "ml-1m") and rows["ml-1m"]["rows"] == 1_000_209
    assert rows["ml-20m"]["location"] == f"not found (download: {DATASETS['ml-20m'].url})"
    assert rows["amazon-beauty"]["location"].startswith("not found (no public download")
    assert rows["synthetic"]["location"] == "generated on demand"
    assert rows["my-own"]["description"] == "local folder (data_dir)"


# ---- load_dataset -----------------------------------------------------------------------------
def test_load_ml100k_folder():
    path = shared_dataset("ml-100k")
    ds = load_dataset(path)
    inter = ds.interactions
    assert (ds.name, len(inter), inter.n_users, inter.n_items) == ("ml-100k", 100_000, 943, 1_682)
    assert inter.time_kind == "timestamp" and inter.rating.min() == 1 and inter.rating.max() == 5
    kinds = {c.name: c.kind for c in ds.item_features.columns.values()}
    assert kinds["title"] == "text" and kinds["genres"] == "multi" and "imdb_url" not in kinds
    assert {c.name for c in ds.user_features.columns.values()} >= {"age", "gender", "occupation"}
    assert ds.item_features.n_without_row == 0 and ds.n_cold_items == 0
    toy = int(inter.item_map.index(["1"])[0])
    assert ds.titles([toy]) == ["Toy Story (1995)"]
    assert ds.data_sha256 == ds.checksum() == sha256(path / "interactions.csv")
    assert any("0 of 1,682 catalogue items" in n for n in ds.report.notes)
    assert load_dataset("ml-100k", data_dir=path.parent).interactions.n_items == 1_682


def test_load_ml_latest_small_keeps_18_cold_catalogue_items():
    ds = load_dataset(shared_dataset("ml-latest-small"))
    assert (ds.interactions.n_items, ds.n_cold_items) == (9_742, 18)
    assert int(np.count_nonzero(ds.interactions.item_counts())) == 9_724
    assert "items.csv: 18 of 9,742 catalogue items have no interactions (kept as cold items)" in ds.report.lines()
    ds = load_dataset(shared_dataset("ml-latest-small"), LoadOptions(item_kcore=1))  # k-core drops them
    assert ds.interactions.n_items == 9_724 and ds.item_features.n_unused_rows == 18


def test_side_table_mismatches_are_reported(tmp_path):
    data = folder(tmp_path, "d", "u1,i1\nu2,i2\nu2,i3\n")
    (data / "items.csv").write_text("item_id,name\ni1,One\ni9,Nine\n")
    (data / "users.csv").write_text("user_id,age\nu1,30\nu7,40\n")
    ds = load_dataset(data)
    assert ds.interactions.item_map.to_list() == ["i1", "i2", "i3", "i9"] and ds.n_cold_items == 1
    assert ds.item_features.n_without_row == 2 and ds.user_features.n_without_row == 1
    assert ds.user_features.n_unused_rows == 1
    assert "items.csv: 2 items with interactions have no feature row (defaults used); 0 rows are for items not in " \
           "the interactions (ignored)" in ds.report.notes
    assert "users.csv: 1 users with interactions have no feature row (defaults used); 1 rows are for users not in " \
           "the interactions (ignored)" in ds.report.notes
    assert ds.titles([0, 1, 3]) == ["One", "i2", "Nine"]


def test_load_single_file_parquet_folder_and_frame(tmp_path):
    frame = pd.DataFrame({"userId": [1, 1, 2], "movieId": [5, 6, 5], "rating": [4.0, 3.0, 5.0]})
    frame.to_csv(tmp_path / "log.csv", index=False)
    ds = load_dataset(tmp_path / "log.csv")
    assert (ds.name, len(ds.interactions), ds.items) == ("log", 3, None) and ds.titles([0]) == ["5"]
    (tmp_path / "pq").mkdir()
    renamed = frame.rename(columns={"userId": "user_id", "movieId": "item_id"})
    renamed.to_parquet(tmp_path / "pq" / "interactions.parquet")
    assert load_dataset(tmp_path / "pq").interactions.user_map.to_list() == ["1", "2"]
    a, b = load_dataset(frame), load_dataset(frame.iloc[::-1])
    assert a.name == "DataFrame" and a.data_sha256 != b.data_sha256


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no interactions table"):
        load_dataset(tmp_path / "empty")
    data = folder(tmp_path, "two")
    pd.DataFrame({"user_id": ["u"], "item_id": ["i"]}).to_parquet(data / "interactions.parquet")
    with pytest.raises(DataError, match="more than one interactions table"):
        load_dataset(data)


def test_synthetic_name_and_local_override(tmp_path):
    ds = load_dataset("synthetic")
    assert ds.name == "synthetic" and ds.interactions.n_users == 2_000 and ds.interactions.n_items == 1_000
    folder(tmp_path, "synthetic", "a,b\n")
    assert len(load_dataset("synthetic", data_dir=tmp_path).interactions) == 1
