"""Every experiment in every scale form: settings build, are JSON, and their training configs
are valid ``TrainConfig``s — the GPU forms (``--form gpu --data cifar10|cifar100``) included, so a
GPU run fails on data or time, never on a config. No training happens here."""

from __future__ import annotations

import json

import pytest

from etfcore.errors import ParameterError
from etfcore.experiments import RunOptions, load_experiments

pytest.importorskip("torch")
pytest.importorskip("lightning")

FORMS = [
    RunOptions(quick=True),
    RunOptions(form="cpu"),
    RunOptions(form="gpu", data="cifar10", accelerator="gpu"),
    RunOptions(form="gpu", data="cifar100", accelerator="gpu"),
]


def _training_configs(exp, settings):
    """The training configs an experiment's first seed would train (the ones reachable without
    training: the modules' own config builders)."""
    from etfcore.experiments import dot_regression as D
    from etfcore.experiments import fixed_etf_transfer as F

    if hasattr(exp, "configs"):
        return list(exp.configs(settings, 0).values())
    if exp.name.startswith("002-"):
        return [D.train_config(settings, m, rho, mix, 0) for m in D.METHODS
                for rho in settings["rhos"] for mix in (False, True)]  # fmt: skip
    if exp.name in ("000-ood-transfer", "000-within-class-covariance"):
        return [F._source_config(settings, h, 0) for h in settings["heads"]]
    if "zoo" in settings and "source" in settings:
        return [{**settings["source"], **settings["zoo"][m], "seed": 0} for m in settings["zoo"]]
    if "backbones" in settings:
        return [{**c, "seed": 0} for c in settings["backbones"].values()]
    if "source" in settings:
        return [{**settings["source"], "seed": 0}]
    return []


@pytest.mark.parametrize("options", FORMS, ids=lambda o: f"{o.form}-{o.data or 'embedded'}")
def test_every_form_builds(options):
    from etfcore.training import TrainConfig

    built = 0
    for name, exp in load_experiments().items():
        try:
            settings = exp.settings(options)
        except ParameterError:  # an experiment may refuse a dataset, saying so
            assert options.data is not None, name
            continue
        json.dumps(settings)  # the cache key needs JSON
        configs = _training_configs(exp, settings)
        assert configs, name
        for c in configs:
            cfg = TrainConfig.from_dict({**c, "accelerator": options.accelerator})
            built += 1
            if options.form == "gpu" and c.get("dataset", "").startswith("cifar"):
                assert cfg.backbone.startswith("resnet"), (name, cfg.backbone)
                assert cfg.epochs <= 200, (name, cfg.epochs)  # the papers' schedules
            if not c.get("dataset", "").startswith("cifar"):  # embedded data: small networks
                assert not cfg.backbone.startswith("resnet"), (name, cfg.dataset)
    assert built > 50
