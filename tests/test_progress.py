"""Logging and progress: one line per epoch off a terminal, a summary when a bar finishes, -v/-q."""
from __future__ import annotations

import logging

import pytest

from towerrec.cli import main
from towerrec.models.base import FitOptions
from towerrec.models.two_tower import TwoTower
from towerrec.progress import progress


def test_off_a_terminal_each_epoch_is_one_info_line(tiny_interactions, caplog):
    caplog.set_level(logging.INFO, logger="towerrec")
    TwoTower(preset="cf", epochs=3, patience=5, embedding_dim=8, id_dim=8).fit(
        tiny_interactions, valid=tiny_interactions, options=FitOptions(progress=False, threads=1))
    epochs = [r.getMessage() for r in caplog.records if "] epoch " in r.getMessage()]
    assert len(epochs) == 3 and epochs[0].startswith("two-tower[cf] epoch 0: loss ")
    assert "valid NDCG@10" in epochs[0]
    assert any(r.getMessage().startswith("two-tower[cf]: 3 epochs in") for r in caplog.records)


def test_a_finished_bar_leaves_a_one_line_summary(caplog):
    caplog.set_level(logging.INFO, logger="towerrec")
    bar = progress(range(4), desc="scoring", show=True)
    for _ in bar:
        bar.set_postfix(loss="0.5")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("scoring: 4 steps in") and lines[0].endswith("(loss 0.5)")
    caplog.clear()
    assert list(progress(range(2), desc="quiet", show=False)) == [0, 1] and not caplog.records


@pytest.mark.parametrize("flag, shown", [([], True), (["-q"], False), (["--quiet"], False)])
def test_cli_quiet_keeps_results_and_drops_info(tmp_path, capsys, flag, shown):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id\n" + "".join(f"u{u},i{(u + j) % 7}\n" for u in range(12) for j in range(5)))
    assert main(["evaluate", *flag, "--data", str(path), "--models", "pop", "--k", "3"]) == 0
    out, err = capsys.readouterr()
    assert "pop" in out and "NDCG@3" in out                      # results on stdout either way
    assert ("interactions" in err) == shown                      # the load report is INFO on stderr
