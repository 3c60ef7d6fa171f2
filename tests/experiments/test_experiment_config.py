"""Experiment files: every mistake names the key and its line; a valid file becomes frozen specs."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from towerrec.cli import main
from towerrec.errors import TowerrecError
from towerrec.experiments.config import load_config, load_experiment, parse_experiment, select_models
from towerrec.experiments.toml_lines import key_lines

VALID = textwrap.dedent("""\
    name = "x"
    seeds = [3, 1]
    [data]
    source = "ml-100k"
    kcore = [5, 2]
    columns = {user = "uid", time = "ts"}
    [split]
    method = "loo"
    [evaluation]
    metrics = ["NDCG", "Recall"]
    k = [20, 10]
    [models.big-ease]
    model = "ease"
    l2 = 100
    [tune.big-ease]
    l2 = {low = 1.0, high = 10.0, log = true}
    """)


def error_of(text: str) -> str:
    with pytest.raises(TowerrecError) as info:
        parse_experiment(text, "exp.toml")
    return str(info.value)


def line_of(message: str) -> int:
    match = re.match(r"exp\.toml:(\d+): ", message)
    assert match, message
    return int(match.group(1))


def test_valid_file_gives_typed_specs():
    exp = parse_experiment(VALID, "exp.toml")
    assert exp.seeds == (3, 1)
    assert (exp.data.user_kcore, exp.data.item_kcore) == (5, 2)
    assert exp.data.load_options().user_col == "uid" and exp.data.load_options().time_col == "ts"
    assert exp.split.method == "loo"
    assert exp.evaluation.k == (10, 20) and exp.evaluation.primary == "NDCG@10"
    assert exp.evaluation.eval_k == (1, 5, 10, 20, 50)
    assert exp.models["big-ease"].model == "ease" and exp.models["big-ease"].overrides == {"l2": 100}
    space = exp.tune["big-ease"][0]
    assert (space.name, space.kind, space.low, space.high, space.log) == ("l2", "float", 1.0, 10.0, True)
    assert exp.models["big-ease"].build().config.l2 == 100


def test_key_lines_tracks_tables_inline_tables_and_multiline_values():
    text = textwrap.dedent("""\
        top = 1
        arr = [
          "a = 1",   # a string that looks like a key
          2,
        ]
        [t]
        s = \"\"\"
        fake = 3
        \"\"\"
        inline = {a = 1, b = {c = 2}}
        "quoted key" = 4
        d.e = 5
        """)
    lines = key_lines(text)
    assert lines[("top",)] == 1 and lines[("arr",)] == 2
    assert lines[("t",)] == 6 and lines[("t", "s")] == 7 and lines[("t", "inline")] == 10
    assert lines[("t", "inline", "b", "c")] == 10
    assert lines[("t", "quoted key")] == 11 and lines[("t", "d", "e")] == 12
    assert ("fake",) not in lines and ("t", "fake") not in lines and ("a",) not in lines


def test_unknown_top_level_key_names_key_and_line():
    message = error_of(VALID.replace('name = "x"\n', 'name = "x"\nseedz = [1]\n'))
    assert "'seedz'" in message and line_of(message) == 2


def test_unknown_key_is_located_in_its_own_table():
    # `method` is legal in [split]; the same key in [evaluation] is unknown and must point there
    text = VALID.replace('k = [20, 10]\n', 'k = [20, 10]\nmethod = "random"\n')
    message = error_of(text)
    assert "'method'" in message and "[evaluation]" in message
    assert line_of(message) == text.splitlines().index('method = "random"') + 1


def test_unknown_key_inside_an_inline_table():
    text = VALID.replace("log = true}", "log = true, hihg = 3}")
    message = error_of(text)
    assert "'hihg'" in message and line_of(message) == len(VALID.splitlines())


def test_unknown_model_names_the_known_ones():
    text = VALID.replace('model = "ease"', 'model = "easy"')
    message = error_of(text)
    assert "'easy'" in message and "ease" in message and line_of(message) == 13


def test_unknown_model_field_and_bad_type():
    message = error_of(VALID.replace("l2 = 100", "lambda = 100"))
    assert "'lambda'" in message and "l2" in message and line_of(message) == 14
    message = error_of(VALID.replace("l2 = 100", 'l2 = "100"'))
    assert "l2" in message and line_of(message) == 14


@pytest.mark.parametrize("old,new,needle,line", [
    ('method = "loo"', 'method = "looo"', "split.method", 8),
    ('metrics = ["NDCG", "Recall"]', 'metrics = ["NDCG", "Recal"]', "Recal", 10),
    ('k = [20, 10]', 'k = [20, 10]\nprimary = "MRR@10"', "primary", 12),
    ("[tune.big-ease]", "[tune.ease]", "[tune.ease]", 15),
    ("log = true}", "log = true, step = 1.0}", "step", 16),
    ('kcore = [5, 2]', 'kcore = [5, 2, 1]', "kcore", 5),
    ('seeds = [3, 1]', 'seeds = [3, 3]', "seeds", 2),
])
def test_other_mistakes_point_at_their_line(old, new, needle, line):
    message = error_of(VALID.replace(old, new))
    assert needle in message and line_of(message) == line


def test_cli_reports_a_config_mistake_in_one_line(tmp_path, capsys):
    path = tmp_path / "exp.toml"
    path.write_text(VALID.replace("[data]\n", "[data]\nsorce = 1\n"))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path}:4:" in err and "'sorce'" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.toml")),
                         ids=lambda p: p.name)
def test_shipped_examples_build_every_model_and_tune_real_fields(path):
    """An example users copy must not carry a typo: it loads (unknown tune fields fail there), every
    model builds with its overrides, and each search space's lower end is a value the model takes."""
    exp = load_experiment(path)
    as_config = load_config(path)                  # what train/evaluate --config read
    assert [s.label for s in select_models(as_config, None)] == list(exp.models)
    for label, spec in exp.models.items():
        spec.build()
        for space in exp.tune.get(label, ()):
            low = space.choices[0] if space.kind == "categorical" else space.low
            spec.build({space.name: low})          # a value from the space is accepted


# ---- one format, names checked with a "did you mean" ------------------------------------------
def test_misspelt_model_names_get_a_suggestion():
    message = error_of(VALID.replace('model = "ease"', 'model = "easy"'))
    assert "did you mean 'ease'" in message and line_of(message) == 13
    text = VALID.replace("[tune.big-ease]\nl2 = {low = 1.0, high = 10.0, log = true}\n", "") + "[models.hybird]\n"
    message = error_of(text)
    assert "[models.hybird]" in message and "did you mean 'hybrid'" in message
    assert line_of(message) == len(text.splitlines())


def test_model_defaults_to_a_label_that_is_a_model_name():
    exp = parse_experiment(VALID + "[models.ease]\nl2 = 7\n", "exp.toml")
    assert exp.models["ease"].model == "ease" and exp.models["ease"].build().config.l2 == 7.0


def test_model_fields_at_the_top_level_point_to_models_tables():
    message = error_of('l2 = 5.0\n' + VALID)
    assert line_of(message) == 1 and "[models.<label>]" in message


def test_presets_are_checked_when_the_file_is_read():
    exp = parse_experiment(VALID + '[models.mf]\nmodel = "two-tower"\npreset = "cf"\nepochs = 2\n', "exp.toml")
    config = exp.models["mf"].build().config
    assert (config.preset, config.hidden, config.train.epochs) == ("cf", (), 2)
    message = error_of(VALID + '[models.h]\nmodel = "hybrid"\npreset = "cf"\n')
    assert "two-tower" in message and line_of(message) == len(VALID.splitlines()) + 1


def test_an_integer_field_needs_an_integer_range():
    text = VALID + '[models.als]\nmodel = "als"\n[tune.als]\nfactors = {low = 8, high = 64}\n'
    message = error_of(text)
    assert 'type = "int"' in message and line_of(message) == len(text.splitlines())
    message = error_of(VALID.replace("log = true}", 'log = true}\nl22 = {choices = [1.0]}'))
    assert "'l22'" in message and "did you mean 'l2'" in message


# ---- nested configs: [models.x.train], dotted keys and glossary names --------------------------
@pytest.fixture
def nested_model(monkeypatch):
    """A registry model whose config nests its training settings, as the real ones soon will."""
    from dataclasses import dataclass, field

    from towerrec import models
    from towerrec.models.base import Recommender

    @dataclass(frozen=True)
    class TrainConfig:
        epochs: int = 20
        learning_rate: float = 1e-3

    @dataclass(frozen=True)
    class NestedConfig:
        embedding_dim: int = 64
        train: TrainConfig = field(default_factory=TrainConfig)

    class Nested(Recommender):
        Config = NestedConfig

    monkeypatch.setitem(models.MODELS, "nested", Nested)
    return Nested


NESTED = VALID + textwrap.dedent("""\
    [models.n]
    model = "nested"
    embedding_dim = 32
    [models.n.train]
    epochs = 5
    [models.d]
    model = "nested"
    train.learning_rate = 0.01
    [models.g]
    model = "nested"
    epochs = 7
    [tune.n]
    epochs = {low = 1, high = 9, type = "int"}
    train = {learning_rate = {low = 1e-4, high = 1e-1, log = true}}
    """)


def test_nested_fields_by_sub_table_dotted_key_or_glossary_name(nested_model):
    exp = parse_experiment(NESTED, "exp.toml")
    assert exp.models["n"].overrides == {"embedding_dim": 32, "train.epochs": 5}
    config = exp.models["n"].build().config
    assert (config.embedding_dim, config.train.epochs, config.train.learning_rate) == (32, 5, 1e-3)
    assert exp.models["d"].overrides == {"train.learning_rate": 0.01}
    assert exp.models["d"].build().config.train.learning_rate == 0.01
    assert exp.models["g"].overrides == {"train.epochs": 7}
    assert exp.models["g"].build().config.train.epochs == 7
    assert [s.name for s in exp.tune["n"]] == ["train.epochs", "train.learning_rate"]
    assert exp.models["n"].build({"train.epochs": 3}).config.train.epochs == 3     # a trial's value wins


def test_nested_mistakes_point_at_their_line(nested_model):
    lines = NESTED.splitlines()
    message = error_of(NESTED.replace("epochs = 5", "epohcs = 5"))
    assert "'epohcs'" in message and "did you mean 'epochs'" in message
    assert line_of(message) == lines.index("epochs = 5") + 1
    message = error_of(NESTED.replace("train.learning_rate = 0.01", 'train.learning_rate = "high"'))
    assert "a number" in message and line_of(message) == lines.index("train.learning_rate = 0.01") + 1


def test_experiment_modules_do_not_import_the_cli():
    """experiments -> cli closed a 10-module import cycle (cli imports experiments.commands)."""
    import ast

    import towerrec.experiments

    folder = Path(towerrec.experiments.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "towerrec.cli", path.name
            elif isinstance(node, ast.Import):
                assert all(a.name != "towerrec.cli" for a in node.names), path.name


# ---- the experiment file `tune` writes ---------------------------------------------------------
def test_tuned_file_replaces_only_the_tuned_table_and_keeps_comments(nested_model):
    from towerrec.experiments.tune import tuned_experiment_text

    exp = parse_experiment("# my notes\n" + NESTED, "exp.toml")
    text = tuned_experiment_text(exp, "n", {"train.epochs": 3, "train.learning_rate": 0.05}, 0.25, 4, 9)
    tuned = parse_experiment(text, "exp.toml")
    assert tuned.models["n"].overrides == {"embedding_dim": 32, "train.epochs": 3, "train.learning_rate": 0.05}
    assert {k: v for k, v in tuned.models.items() if k != "n"} == {k: v for k, v in exp.models.items() if k != "n"}
    assert tuned.tune == exp.tune and tuned.seeds == exp.seeds and tuned.data == exp.data
    assert "# my notes" in text and "best of 9 trials (trial 4), valid NDCG@10 = 0.250000" in text


def test_tuned_file_without_a_plain_table_is_written_whole(tmp_path):
    """`[models] ease = {...}` has no [models.ease] block to replace: the file is regenerated."""
    from towerrec.experiments.tune import tuned_experiment_text

    (tmp_path / "data").mkdir()
    text = VALID.replace('source = "ml-100k"', 'source = "data"').replace(
        '[models.big-ease]\nmodel = "ease"\nl2 = 100\n', '[models]\nbig-ease = {model = "ease", l2 = 100}\n')
    exp = parse_experiment(text, tmp_path / "exp.toml")
    tuned = parse_experiment(tuned_experiment_text(exp, "big-ease", {"l2": 5.5}, 0.5, 0, 1), "elsewhere/exp.toml")
    assert tuned.models["big-ease"].overrides == {"l2": 5.5} and tuned.tune == exp.tune
    assert tuned.data.source == str((tmp_path / "data").resolve())      # still found from another folder
    assert (tuned.split, tuned.evaluation, tuned.seeds) == (exp.split, exp.evaluation, exp.seeds)
