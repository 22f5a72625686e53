"""Shared fixtures: a tiny network spec file that trains in seconds on the built-in data."""

from __future__ import annotations

import pytest
from hypothesis import settings

# The property tests draw the same examples on every run (a seed from each test's own code), so the
# suite passes or fails alike each time: random shapes have crashed oneDNN before (test_nn's
# ONEDNN_CASES), and CI must not find a new one by chance. `--hypothesis-profile explore` draws new
# examples each run, to look for more.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("repeatable")

TINY_LAYERS = """
  - {type: conv, name: conv1, out_channels: 8, kernel: 3, padding: 1}
  - {type: relu, name: relu1}
  - {type: maxpool, name: pool1, kernel: 2}
  - {type: conv, name: conv2, out_channels: 16, kernel: 3, padding: 1}
  - {type: relu, name: relu2}
  - {type: maxpool, name: pool2, kernel: 2}
  - {type: flatten, name: flatten}
  - {type: linear, name: fc6, out_features: 32}
  - {type: relu, name: relu6}
"""


def tiny_yaml(dropout: bool) -> str:
    drop = "  - {type: dropout, name: drop6}\n" if dropout else ""
    return (
        "name: tiny\ninput: [3, 32, 32]\nlayers:"
        + TINY_LAYERS
        + drop
        + "  - {type: linear, name: fc8, out_features: 10}\n"
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    """Path of the tiny spec, with dropout before its last layer."""
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(tiny_yaml(dropout=True))
    return str(path)


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> str:
    """Path of the tiny spec without dropout (bit-comparable across process counts)."""
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(tiny_yaml(dropout=False))
    return str(path)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch) -> None:
    """Decoded-image caches (ilsvrc.training.cache) go to a temporary folder, never the user's ~/.cache."""
    monkeypatch.setenv("ILSVRC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "decoded-cache"))
