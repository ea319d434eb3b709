"""The registry of backbones, heads and losses, and the presets built from base recipes."""

import json
import pathlib

import pytest

pytest.importorskip("torch")

import etfcore as ec  # noqa: E402
from etfcore.training import registry  # noqa: E402
from etfcore.training.config import PRESETS, TrainConfig  # noqa: E402

FIXTURE = pathlib.Path(__file__).parent / "data" / "presets_before_registry.json"


def test_every_preset_is_the_literal_dict_of_the_previous_release():
    # presets_before_registry.json was written by the release whose presets were 214 lines of
    # literal dicts: {name: {"preset": PRESETS[name], "config": TrainConfig(...).to_dict()}}
    old = json.loads(FIXTURE.read_text())
    # fields added to TrainConfig since that release, with the default every preset must get
    added_since = {"last_batch": "drop"}
    assert set(PRESETS) == set(old)
    for name, kw in PRESETS.items():
        assert kw == old[name]["preset"], name
        assert TrainConfig.from_dict(kw).to_dict() == {**old[name]["config"], **added_since}, name


def test_presets_built_from_one_recipe_do_not_share_it():
    a, b = PRESETS["digits-etf-dr"], PRESETS["digits-lt-etf-dr"]
    a["lr"] = 0.5
    try:
        assert b["lr"] == 0.1 and PRESETS["digits-etf-dr-mixup"]["lr"] == 0.1
    finally:
        a["lr"] = 0.1


def test_config_choices_and_rules_come_from_the_registry():
    fields = {f.name: f for f in TrainConfig.fields()}
    assert fields["loss"].metadata["choices"] == registry.LOSSES.names()
    assert fields["head"].metadata["choices"] == registry.HEADS.names()
    assert fields["backbone"].metadata["choices"] == registry.BACKBONES.names()
    for name, entry in registry.LOSSES.items():
        for head, h in registry.HEADS.items():
            kw = {"loss": name, "head": head, "normalize_features": True}
            if entry.needs_fixed_frame and not h.fixed_frame:
                with pytest.raises(ec.ParameterError, match="needs a fixed frame"):
                    TrainConfig.from_dict(kw)
            else:
                assert TrainConfig.from_dict(kw).loss == name
        if entry.needs_normalized_features:
            with pytest.raises(ec.ParameterError, match="normalize_features"):
                TrainConfig.from_dict({"loss": name, "head": "etf"})


@pytest.mark.parametrize("loss", registry.LOSSES.names())
def test_the_builder_builds_every_registered_loss(loss):
    from etfcore.training.build import build_head, build_loss

    cfg = TrainConfig.from_dict({"loss": loss, "head": "etf", "normalize_features": True})
    head = build_head(cfg, 4, [10, 10, 10, 10])
    crit = build_loss(cfg, head, [10, 10, 10, 10])
    assert bool(getattr(crit, "uses_features", False)) == registry.LOSSES[loss].uses_features
    if not registry.LOSSES[loss].uses_temperature:
        with pytest.raises(ec.ParameterError, match="temperature"):
            build_loss(cfg.replace(temperature=0.5), head, [10, 10, 10, 10])


@pytest.mark.parametrize("backbone", registry.BACKBONES.names())
def test_the_builder_builds_every_registered_backbone(backbone):
    import torch

    from etfcore.training.build import build_backbone, check_backbone

    cfg = TrainConfig.from_dict({"backbone": backbone, "feature_dim": 8})
    shape = (64,) if backbone == "mlp" else (3, 32, 32)
    net = build_backbone(cfg, shape)
    check_backbone(net, torch.zeros(shape), 8)  # raises unless one sample gives (1, 8)


def test_registering_a_name_twice_or_reading_an_unknown_one_is_refused():
    r = registry.Registry("widget")
    r.register("a")(lambda: None)
    with pytest.raises(ec.ParameterError, match="already registered"):
        r.register("a")(lambda: None)
    with pytest.raises(ec.ParameterError, match="unknown widget 'b'; known: a"):
        r["b"]
