"""The photometry options: allowed values listed once (archi.options), offered alike by the
JSON schema of the workflow's configuration and documented in config/config.yaml; grouped
options still built, read and written by archi's flat keys."""

from __future__ import annotations

import dataclasses
import pickle
import re
from pathlib import Path

import pytest
import yaml

from archi.errors import ConfigError
from archi.options import (CHOICES, GROUPS, KEYS, PAIRED_CHOICES, ApertureOptions,
                           DetectionOptions, Options, ReadingOptions, TrackingOptions)

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
CONFIG = ROOT / "config" / "config.yaml"


def schema_photometry() -> dict:
    return yaml.safe_load(SCHEMA.read_text())["properties"]["photometry"]["properties"]


def config_comments() -> dict[str, str]:
    """Comment lines above each key of config.yaml's photometry section, per key."""
    comments: dict[str, str] = {}
    block: list[str] = []
    inside = False
    for line in CONFIG.read_text().splitlines():
        if line.startswith("photometry:"):
            inside = True
            continue
        if inside and line and not line.startswith(" "):
            break
        if not inside:
            continue
        text = line.strip()
        if text.startswith("#"):
            block.append(text)
        elif ":" in text:
            comments[text.split(":")[0]] = " ".join(block)
            block = []
    return comments


def test_schema_offers_every_option_and_nothing_else():
    assert list(schema_photometry()) == list(KEYS)


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_schema_allows_the_same_values(key):
    prop = schema_photometry()[key]
    allowed = CHOICES[key]
    if key in PAIRED_CHOICES:
        one = "|".join(allowed)
        assert prop["pattern"] == rf"^({one})(\+({one}))?$"
        for value in (*allowed, f"{allowed[0]}+{allowed[-1]}"):
            assert re.fullmatch(prop["pattern"], value)
        assert not re.fullmatch(prop["pattern"], "+".join(allowed[:1] * 3))
    else:
        assert tuple(prop["enum"]) == allowed


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_config_documents_every_allowed_value(key):
    config = yaml.safe_load(CONFIG.read_text())["photometry"]
    comment = config_comments()[key]
    for value in CHOICES[key]:
        assert re.search(rf"\b{re.escape(value)}\b", comment), (key, value, comment)
    if key in PAIRED_CHOICES:
        assert "P+S" in comment
    Options(**{key: config[key]})  # the value written there is allowed


def test_config_values_are_the_defaults():
    config = yaml.safe_load(CONFIG.read_text())["photometry"]
    assert list(config) == list(KEYS)
    assert Options.from_mapping(config, source=str(CONFIG)) == Options()


def test_groups_hold_every_flat_key_once():
    names = [f for cls in GROUPS.values() for f in cls.__dataclass_fields__]
    assert sorted(names) == sorted(KEYS)


def test_flat_keys_build_read_and_write_the_groups():
    options = Options(method="circle+shape", detect_mode="offsets+dynam", chunk_frames=16,
                      low_memory=True, grid_bg=600, initial_detect="dynam", val_range=(8, 24),
                      step=8)
    assert options.apertures == ApertureOptions(method="circle+shape", grid_bg=600)
    assert options.detection == DetectionOptions(initial_detect="dynam")
    assert options.reading == ReadingOptions(chunk_frames=16, low_memory=True)
    assert options.tracking == TrackingOptions(detect_mode="offsets+dynam")
    assert options.method == "circle+shape" and options.chunk_frames == 16
    assert (options.star_method(0), options.star_method(3)) == ("circle", "shape")
    assert (options.star_tracking(0), options.star_tracking(1)) == ("offsets", "dynam")
    assert options.grid == 3 and options.effective_chunk == 8
    assert options.detection.methods == ("dynam", "dynam")
    assert list(options.to_dict()) == list(KEYS)
    assert options.to_dict()["val_range"] == [8, 24]
    assert Options.from_mapping(options.to_dict()) == options
    assert options.replace(chunk_frames=32).chunk_frames == 32
    changed = dataclasses.replace(options, chunk_frames=32)
    assert changed == options.replace(chunk_frames=32) and changed.method == "circle+shape"
    assert dataclasses.replace(options, tracking=TrackingOptions()).detect_mode == "offsets"
    assert pickle.loads(pickle.dumps(options)) == options
    assert repr(options).startswith("Options(method='circle+shape', initial_detect='dynam',")


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="unknown option"):
        Options.from_mapping({"radius": 3})
    with pytest.raises(ConfigError, match="grid_bg .*; step must be > 0"):
        Options(grid_bg=300, step=-1)
    with pytest.raises(ConfigError, match="method 'ring'"):
        Options(method="ring")
    with pytest.raises(TypeError):
        Options(radius=3)


def schema_keys(schema: dict, prefix: str = "") -> dict[str, dict]:
    """Every key of the schema, nested ones as ``section.key``, with its definition."""
    out = {}
    for key, prop in schema.get("properties", {}).items():
        out[prefix + key] = prop
        if prop.get("type") == "object":
            out.update(schema_keys(prop, f"{prefix}{key}."))
    return out


def test_schema_describes_every_key_and_its_default_is_the_library_and_config_one():
    """Every key of the workflow's schema has a description and a default; a photometry
    key's default is archi.options' default, and every default is config/config.yaml's value
    (sections: the defaults of their keys)."""
    keys = schema_keys(yaml.safe_load(SCHEMA.read_text()))
    config = yaml.safe_load(CONFIG.read_text())
    library = Options().to_dict()
    assert len(keys) == 8 + len(KEYS) + 5  # top level, photometry, outputs
    for name, prop in keys.items():
        assert prop.get("description", "").strip(), f"{name} has no description"
        assert "default" in prop, f"{name} has no default"
        section, _, key = name.rpartition(".")
        in_config = config[section][key] if section else config[name]
        if prop["type"] == "object":
            assert prop["default"] == {} and set(in_config) == {
                k.split(".")[1] for k in keys if k.startswith(name + ".")}, name
            continue
        assert prop["default"] == in_config, (name, prop["default"], in_config)
        if section == "photometry":
            assert prop["default"] == library[key], (name, prop["default"], library[key])
