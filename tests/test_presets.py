"""Typed presets: every preset of every paper resolves to its schema, unknown keys fail with the allowed ones
listed, and ``dataset_overrides`` are the one place a dataset changes a preset."""
import dataclasses

import pytest

from ssltutor.presets import (PAPER_PRESETS, PRESETS, SCHEMAS, CaSSLeSettings, FoundationsSettings,
                              InternalSettings, RotationSettings, preset, resolve)


@pytest.mark.parametrize("paper", [None, *PAPER_PRESETS])
@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_resolves_to_its_schema(name, paper):
    settings = resolve(name, paper)
    assert type(settings) is SCHEMAS[paper]
    as_dict = preset(name, paper)
    if paper != "learn":  # learn keeps only the keys its presets set
        assert set(as_dict) == {f.name for f in dataclasses.fields(SCHEMAS[paper])}
    for dataset in ("digits", "cifar10", "intel_image", "aptos2019"):
        resolve(name, paper, dataset=dataset)  # every dataset's overrides are valid keys


def test_unknown_names_and_keys_say_what_is_allowed():
    with pytest.raises(ValueError, match="unknown preset 'gpu': choose one of smoke, cpu, colab, paper, auto"):
        preset("gpu")
    with pytest.raises(ValueError, match="no presets for paper 'simclr'"):
        preset("cpu", paper="simclr")
    with pytest.raises(ValueError, match=r"unknown preset key\(s\) \['epoch'\]: known keys are .*epochs"):
        preset("cpu", paper="rotation", epoch=3)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['size'\] in dataset_overrides\['digits'\]"):
        preset("cpu", paper="cassle", dataset_overrides={"digits": {"size": 16}})
    with pytest.raises(ValueError, match="precision must be one of"):
        preset("cpu", precision="fp8")


def test_dataset_overrides_apply_only_to_their_dataset_and_yield_to_explicit_overrides():
    assert preset("cpu", paper="cassle", dataset="digits")["image_size"] == 16
    assert preset("cpu", paper="cassle", dataset="cifar10")["image_size"] == 32
    assert preset("cpu", paper="cassle")["image_size"] == 32  # no dataset: no overrides
    assert preset("paper", paper="cassle", dataset="digits")["image_size"] == 32  # the paper preset keeps 32 px
    assert preset("cpu", paper="cassle", dataset="digits", image_size=24)["image_size"] == 24
    assert preset("cpu", paper="internal", dataset="digits")["labelled_fraction"] == 0.2
    assert preset("cpu", paper="internal", dataset="cifar10")["labelled_fraction"] == 1.0
    assert preset("colab", paper="internal", dataset="digits")["labelled_fraction"] == 1.0
    assert preset("cpu", paper="rotation", dataset="digits")["label_fraction"] == 0.1
    assert preset("cpu", paper="rotation", dataset="intel_image")["label_fraction"] == 1.0
    foundations = preset("cpu", paper="foundations", dataset="digits")
    assert (foundations["image_size"], foundations["crop_scale"]) == (16, (0.5, 1.0))
    assert isinstance(resolve("cpu", "foundations"), FoundationsSettings)
    assert isinstance(resolve("cpu", "internal"), InternalSettings)
    assert isinstance(resolve("cpu", "rotation"), RotationSettings)
    assert isinstance(resolve("cpu", "cassle"), CaSSLeSettings)


def test_presets_returned_are_copies():
    first = preset("cpu", paper="cassle")
    first["ssl_options"]["swav"]["num_prototypes"] = 1
    first["method_overrides"]["x"] = {}
    again = preset("cpu", paper="cassle")
    assert again["ssl_options"]["swav"]["num_prototypes"] != 1 and "x" not in again["method_overrides"]
