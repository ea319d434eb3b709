"""The training commands: ``etfcore train``, ``etfcore finetune``, ``etfcore extract`` (need
torch and Lightning, imported when a command runs)."""

from __future__ import annotations

import argparse
import json
from typing import Any, Optional

from .._progress import Reporter, add_quiet_argument
from ..errors import ParameterError

COMMANDS = ("train", "finetune", "extract")

_LIGHTNING_FLAGS = ("accelerator", "devices", "strategy", "num_nodes", "precision")


def _lightning_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--accelerator", help="Lightning accelerator: auto, cpu, gpu, ...")
    p.add_argument("--devices", help="Lightning devices: auto, a count, or a list like 0,1")
    p.add_argument("--strategy", help="Lightning strategy: auto, ddp, ddp_spawn, fsdp, ...")
    p.add_argument("--num-nodes", dest="num_nodes", type=int, help="nodes for multi-node DDP")
    p.add_argument("--precision", help="Lightning precision: 32-true, 16-mixed, bf16-mixed")


def _pretrained_run_args(p: argparse.ArgumentParser, example: str) -> None:
    """RUN and the target's --preset/--config/--set (finetune, extract)."""
    p.add_argument("run", metavar="RUN", help="a run directory or checkpoint of `etfcore train`")
    p.add_argument("--preset", help="a preset for the target (see train --list-presets)")
    p.add_argument("--config", help="a TOML file of config keys for the target")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help=f"override one config key of the target ({example})",
    )


def add_parsers(sub: Any) -> None:
    tr = sub.add_parser(
        "train", help="train with a fixed-ETF or learned head on Lightning (needs torch)"
    )
    tr.add_argument("--preset", help="a preset name (see --list-presets)")
    tr.add_argument("--config", help="a TOML file of config keys (see --print-config)")
    tr.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key"
    )
    _lightning_flags(tr)
    tr.add_argument("--out", default="out/train", help="runs go to OUT/NAME/version_N")
    tr.add_argument(
        "--resume", nargs="?", const="", default=None, metavar="RUN",
        help="continue the latest run under OUT, or RUN (a run directory or checkpoint)",
    )
    tr.add_argument(
        "--prepare-data", action="store_true",
        help="download/prepare the config's data and exit (do this before torchrun/srun)",
    )
    tr.add_argument("--list-presets", action="store_true", help="print the presets")
    tr.add_argument("--print-config", action="store_true", help="print every config key")
    ft = sub.add_parser(
        "finetune",
        help="fine-tune a trained run's backbone on a target task with a new head (needs torch)",
    )
    _pretrained_run_args(ft, "e.g. classes=5,6,7,8,9")
    ft.add_argument(
        "--head", choices=["linear", "etf", "cm", "wicm", "lwm"],
        help="the new head (default: the config's head); cm/wicm/lwm from the target's class "
        "means of the frozen pretrained features",
    )
    ft.add_argument(
        "--head-only", action="store_true",
        help="train the head only (backbone frozen in eval mode)",
    )
    ft.add_argument(
        "--no-train", action="store_true",
        help="only evaluate the new head (with --head cm: the centred-means classifier)",
    )
    _lightning_flags(ft)
    ft.add_argument("--out", default="out/finetune", help="runs go to OUT/NAME/version_N")
    ft.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ex = sub.add_parser(
        "extract",
        help="penultimate features of a trained run's backbone on a dataset, for probe/rank",
    )
    _pretrained_run_args(ex, "e.g. dataset=mnist1d, classes=5,6")
    ex.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda:0, ...")
    ex.add_argument("--batch-size", type=int, default=512)
    add_quiet_argument(ex)
    ex.add_argument(
        "--out", required=True, metavar="DIR",
        help="writes DIR/{train,val,test}_{features,labels}.npy and _stats.bin",
    )


def run(args: argparse.Namespace) -> int:
    """Runs a training command."""
    return {"train": _train, "finetune": _finetune, "extract": _extract}[args.command](args)


def _run_to_resume(out: str, name: Optional[str]) -> str:
    """``OUT/NAME`` for a bare ``--resume``: the given name, else the only run name under OUT."""
    import glob
    import os

    if name:
        return os.path.join(out, name)
    pattern = os.path.join(out, "*", "version_*", "checkpoints", "last.ckpt")
    names = sorted({os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(p))))
                    for p in glob.glob(pattern)})
    if len(names) > 1:
        raise ParameterError(
            f"several runs under {out!r} ({', '.join(names)}): choose one with "
            "--resume OUT/NAME/version_N or --set name=NAME"
        )
    return os.path.join(out, names[0]) if names else out


def _train(args: argparse.Namespace) -> int:
    from ..training.config import PRESETS, TrainConfig, describe_fields

    if args.list_presets:
        for name, kw in PRESETS.items():
            print(f"{name:<32} {', '.join(f'{k}={v}' for k, v in kw.items())}")
        return 0
    if args.print_config:
        print(describe_fields())
        return 0
    from ..training.trainer import Trainer, config_from_sources, find_checkpoint, resume_config

    flags = {k: str(getattr(args, k)) for k in _LIGHTNING_FLAGS if getattr(args, k) is not None}
    if args.resume is not None:
        # The run's own config; --set/--accelerator/... may change only where it runs.
        if args.preset or args.config:
            raise ParameterError(
                "--resume continues a run with its own saved config: drop --preset/--config "
                "(choose the run with --resume OUT/NAME/version_N, or --set name=NAME)"
            )
        overrides = config_from_sources(None, None, args.set)
        ckpt = find_checkpoint(args.resume or _run_to_resume(args.out, overrides.get("name")))
        config = resume_config(ckpt, {**overrides, **flags})
        trainer = Trainer(config, out_dir=args.out)
        print(f"resuming {ckpt}", flush=True)
        trainer.fit(resume=ckpt)
    else:
        raw = config_from_sources(args.preset, args.config, args.set)
        config = TrainConfig.from_dict({**raw, **flags})
        if args.prepare_data:  # download once, before a launcher starts many processes
            from ..training.build import build_datamodule

            config.validate()
            dm = build_datamodule(config)
            print(f"data ready: {config.dataset} ({dm.num_classes} classes) in {config.data_root}")
            return 0
        trainer = Trainer(config, out_dir=args.out)
        trainer.fit()
    if trainer.lightning is None or trainer.lightning.is_global_zero:
        print(f"run directory: {trainer.run_dir}")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from ..training.finetune import finetune
    from ..training.trainer import config_from_sources

    flags = {k: str(getattr(args, k)) for k in _LIGHTNING_FLAGS if getattr(args, k) is not None}
    overrides = {**config_from_sources(args.preset, args.config, args.set), **flags}
    result = finetune(
        args.run,
        overrides,
        head=args.head,
        head_only=True if args.head_only else None,
        out_dir=args.out,
        train=not args.no_train,
    )
    if args.json:
        summary = {
            "scores": result.scores,
            "run_dir": result.run_dir,
            "config": result.config.to_dict(),
            "source": result.source.to_dict(),
        }
        print(json.dumps(summary, indent=2))
    else:
        print(result.table())
        if result.run_dir:
            print(f"run directory: {result.run_dir}")
    return 0


def _extract(args: argparse.Namespace) -> int:
    from ..training.extract import extract_run_features
    from ..training.trainer import config_from_sources

    overrides = config_from_sources(args.preset, args.config, args.set)
    parts = extract_run_features(
        args.run, overrides, out_dir=args.out, device=args.device, batch_size=args.batch_size,
        progress=Reporter(enabled=not getattr(args, "quiet", False)),
    )
    for split, r in parts.items():
        rows, dim = r.features.shape
        print(f"{split:<6} {rows:>8} × {dim:<6} -> {r.path}")
    return 0
