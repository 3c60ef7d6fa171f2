"""`towerrec.config.apply_overrides`: one set of rules for Python kwargs, the CLI and TOML tables.

Real model configs are flat today; nested training settings (`train: TrainConfig`) are coming, so
the nesting rules are pinned on a small dataclass pair defined here, and the flat rules on the
real configs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from towerrec.config import OverrideError, apply_overrides, field_paths, resolve_name, resolve_overrides
from towerrec.errors import TowerrecError


@dataclass(frozen=True)
class Train:
    epochs: int = 20
    learning_rate: float = 1e-3
    patience: int = 3


@dataclass(frozen=True)
class Sampling:
    negatives: int = 0
    patience: int = 1          # a second `patience`: the glossary name alone is ambiguous


@dataclass(frozen=True)
class Toy:
    embedding_dim: int = 64
    hidden: tuple[int, ...] = (256,)
    scorer: str = "cosine"
    stride: int | None = None
    train: Train = field(default_factory=Train)
    sampling: Sampling = field(default_factory=Sampling)


def test_top_level_dotted_nested_dict_and_glossary_names_all_reach_the_same_field():
    base = Toy()
    assert apply_overrides(base, {"embedding_dim": 32}).embedding_dim == 32
    for overrides in ({"train.epochs": 5}, {"train": {"epochs": 5}}, {"epochs": 5}):
        config = apply_overrides(base, overrides)
        assert config.train == Train(epochs=5), overrides
    assert apply_overrides(base, {"negatives": 7}).sampling.negatives == 7
    assert base.train.epochs == 20                       # frozen input untouched


def test_values_are_converted_like_the_defaults():
    config = apply_overrides(Toy(), {"hidden": [128, 64], "learning_rate": 1, "embedding_dim": 48.0})
    assert config.hidden == (128, 64) and isinstance(config.hidden, tuple)
    assert config.train.learning_rate == 1.0 and isinstance(config.train.learning_rate, float)
    assert config.embedding_dim == 48 and isinstance(config.embedding_dim, int)
    assert apply_overrides(Toy(), {"stride": 4}).stride == 4     # None default: the annotation decides


@pytest.mark.parametrize("overrides,needles", [
    ({"embeding_dim": 8}, ["'embeding_dim'", "did you mean 'embedding_dim'"]),
    ({"train.epochz": 8}, ["'train.epochz'", "did you mean"]),
    ({"epoch": 8}, ["did you mean 'epochs'"]),
    ({"patience": 2}, ["ambiguous", "'train.patience'", "'sampling.patience'"]),
    ({"embedding_dim": 8.5}, ["embedding_dim", "an integer"]),
    ({"embedding_dim": True}, ["an integer"]),
    ({"learning_rate": "fast"}, ["learning_rate", "a number"]),
    ({"scorer": 3}, ["a string"]),
    ({"hidden": ["a"]}, ["a list of integers"]),
    ({"hidden": 5}, ["a list"]),
    ({"stride": "x"}, ["stride"]),
    ({"epochs": 1, "train": {"epochs": 2}}, ["given twice"]),
    ({"train": 3}, ["Train"]),
])
def test_mistakes_are_one_line_errors_naming_the_field(overrides, needles):
    with pytest.raises(TowerrecError) as info:
        apply_overrides(Toy(), overrides, source="toy.toml")
    message = str(info.value)
    assert message.startswith("toy.toml: ") and "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_errors_carry_the_key_path_inside_the_overrides():
    """The TOML reader turns this path into file:line, so it must be the key as written."""
    with pytest.raises(OverrideError) as info:
        resolve_overrides(Toy(), {"train": {"epochz": 1}})
    assert info.value.keypath == ("train", "epochz")


def test_canonical_names_and_field_paths():
    assert resolve_overrides(Toy(), {"epochs": 5, "sampling": {"negatives": 2}}) == {
        "train.epochs": 5, "sampling.negatives": 2}
    assert resolve_name(Toy(), "learning_rate") == ("train", "learning_rate")
    assert "train.epochs" in field_paths(Toy()) and "sampling.patience" in field_paths(Toy())


def test_a_specific_field_wins_over_a_whole_nested_value():
    config = apply_overrides(Toy(), {"train": Train(epochs=9, patience=9), "train.epochs": 4})
    assert config.train == Train(epochs=4, patience=9)


def test_real_configs():
    from towerrec.models.als import ALSConfig
    from towerrec.models.two_tower import TwoTowerConfig

    config = apply_overrides(TwoTowerConfig(), {"hidden": [128], "epochs": 2, "text_columns": ["title"]})
    assert config.hidden == (128,) and config.train.epochs == 2 and config.text_columns == ("title",)
    with pytest.raises(TowerrecError, match="did you mean 'regularization'"):
        apply_overrides(ALSConfig(), {"regularisation": 1.0})


def test_recommender_init_uses_the_same_rules():
    from towerrec.models.base import Recommender
    from towerrec.models.ease import EASE

    assert EASE(l2=5).config.l2 == 5.0 and isinstance(EASE(l2=5).config.l2, float)
    with pytest.raises(TowerrecError, match=r"^EASE: unknown field 'lam'"):
        EASE(lam=1.0)

    class ToyModel(Recommender):
        Config = Toy

    assert ToyModel(epochs=3).config.train.epochs == 3        # a glossary name reaches the nested field
    assert ToyModel(Toy(embedding_dim=8), **{"train.learning_rate": 0.1}).config == Toy(
        embedding_dim=8, train=Train(learning_rate=0.1))
