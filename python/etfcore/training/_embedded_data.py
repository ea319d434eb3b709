"""Stand-in with the interface of ``etfcore.training.datamodule.ClassificationDataModule`` over
the existing ``datasets`` helpers, used only while that module is absent (delete on merge)."""

from __future__ import annotations

from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from ..errors import ParameterError
from . import datasets


class EmbeddedDataModule(L.LightningDataModule):
    def __init__(
        self,
        *,
        dataset: str,
        seed: int,
        batch_size: int,
        num_workers: int = 0,
        imbalance_ratio: float = 1.0,
        data_root: str = "data",
        download: bool = True,
        image_size: int = 32,
        classes: Any = None,
        label_map: Any = None,
        val_fraction: float = 0.0,
    ) -> None:
        super().__init__()
        if classes is not None or label_map is not None or val_fraction:
            raise ParameterError("classes, label_map and val_fraction need the datamodule")
        if dataset in ("digits", "gmm"):
            d = datasets.embedded(dataset, seed=seed, imbalance_ratio=imbalance_ratio)
            self.input_shape = (d["input_dim"],)
        else:
            d = datasets.image_datasets(
                dataset,
                data_root,
                seed=seed,
                download=download,
                imbalance_ratio=imbalance_ratio,
                image_size=image_size,
            )
            self.input_shape = d["input_shape"]
        self.train_dataset, self.test_dataset, self.val_dataset = d["train"], d["test"], None
        self.num_classes, self.train_counts = d["num_classes"], d["train_counts"]
        self.batch_size, self.num_workers = batch_size, num_workers

    def train_dataloader(self) -> DataLoader:
        drop = len(self.train_dataset) > self.batch_size
        return DataLoader(
            self.train_dataset,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=drop,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> list:
        return []

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_dataset, batch_size=512, num_workers=self.num_workers)
