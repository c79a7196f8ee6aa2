"""The one rule for paths a reader may see (pages, cards, downloads, the report)."""

from __future__ import annotations

from pathlib import Path

from diffloss.paths import REPO, public_json, public_text, shown_path


def test_shown_path_is_relative_under_a_root_and_a_bare_name_elsewhere(tmp_path):
    roots = {tmp_path / "runs": "runs/", REPO: ""}
    assert shown_path(REPO / "pretrained" / "prior") == "pretrained/prior"
    assert shown_path(tmp_path / "runs" / "a" / "model", roots) == "runs/a/model"
    assert shown_path(tmp_path / "runs", roots) == "runs"
    assert shown_path("/etc/passwd", roots) == "passwd"
    assert shown_path("owner/prior") == "owner/prior"  # a hub id or relative path is shown as given


def test_the_deepest_root_wins(tmp_path):
    roots = {tmp_path: "outer/", tmp_path / "inner": "in/"}
    assert shown_path(tmp_path / "inner" / "x.png", roots) == "in/x.png"


def test_public_text_and_json_rewrite_every_absolute_path_and_nothing_else(tmp_path):
    text = f"trained on {tmp_path}/photos/cat.png, see https://x.org/a/b and L2/DiffLoss 1/2"
    assert public_text(text, {tmp_path: "runs/"}) == "trained on runs/photos/cat.png, see https://x.org/a/b and L2/DiffLoss 1/2"
    card = {"init": str(tmp_path / "base"), "steps": 5, "clean": [f"{tmp_path}/photos"], "loss": {"fidelity": "mse"}}
    assert public_json(card, {tmp_path: "runs/"}) == {"init": "runs/base", "steps": 5, "clean": ["runs/photos"],
                                                      "loss": {"fidelity": "mse"}}
