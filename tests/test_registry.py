"""The registries are the only lists of names: the command line's choices, the settings' validation and the
README's lists agree with them."""
import argparse
import re
from pathlib import Path

import pytest

from dreamdd.cli import build_parser
from dreamdd.config import CHOICES, load_preset, list_presets
from dreamdd.data import dataset_names
from dreamdd.protocols import PROTOCOLS
from dreamdd.registry import METHODS, MODELS, SELECTORS, Registry, coreset_methods

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _choices(command: str, option: str) -> list[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(next(a for a in sub.choices[command]._actions if option in a.option_strings).choices)


def test_cli_choices_come_from_the_registries():
    assert _choices("distill", "--method") == list(METHODS) == ["idc", "dc", "dsa", "dm", "mtt", "dreamplus"]
    assert _choices("select", "--method") == coreset_methods() == ["random", "herding", "kcenter", "representative"]
    assert _choices("evaluate", "--protocol") == list(PROTOCOLS)
    assert CHOICES[("match", "method")] == tuple(METHODS)


@pytest.mark.parametrize("registry", [METHODS, MODELS, PROTOCOLS])
def test_the_readme_names_every_registered_entry(registry):
    missing = [name for name in registry.names() if not re.search(rf"\b{re.escape(name)}\b", README)]
    assert not missing, f"README.md does not mention the {registry.plural} {missing}"


def test_the_readme_names_every_dataset_and_selector():
    assert [n for n in dataset_names() if n not in README] == []
    assert [n for n in coreset_methods() if n not in README] == []


def test_an_unknown_name_is_one_message_listing_the_known_ones():
    registry = Registry("colour", {"red": 1, "blue": 2}, aliases={"crimson": "red"})
    assert registry["crimson"] == 1 and "crimson" in registry and "green" not in registry
    assert registry.names() == ["blue", "red"] and registry.names(aliases=True) == ["blue", "crimson", "red"]
    with pytest.raises(Exception, match="unknown colour 'green'; known colours: blue, red"):
        registry["green"]
    assert SELECTORS["representative"] is SELECTORS["dream"]     # resolved lazily, once


def test_ipc_presets_are_generated_from_the_dataset_preset():
    assert "cifar10-ipc10" in list_presets() and "tiny-imagenet-ipc50" in list_presets()   # generated; a file
    generated = load_preset("cifar10-ipc10")
    base = load_preset("cifar10")
    assert generated["synth"] == {**base.get("synth", {}), "ipc": 10}
    assert {k: v for k, v in generated.items() if k != "synth"} == {k: v for k, v in base.items() if k != "synth"}
