"""What every paper notebook does around its method: load the chosen dataset at the preset's size, pick the device,
and write ``metrics.json`` in one format that ``ssltutor batch`` gathers into ``results.csv``."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from . import __version__
from .data import ImageDataset, load, stratified_split
from .presets import preset as get_preset
from .train import resolve_device


def cap(data: ImageDataset, limit: int | None, seed: int) -> ImageDataset:
    """A stratified subset of at most ``limit`` images (``None`` keeps all)."""
    if limit is None or len(data) <= limit:
        return data
    if (data.labels < 0).any():
        return data.subset(torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:limit])
    _, keep = stratified_split(data.labels, val_fraction=limit / len(data), seed=seed)
    return data.subset(keep)


def load_experiment_data(dataset: str, data_root: str | None = None, preset: str = "cpu", seed: int = 0,
                         image_size: int | None = None, test_split: str = "test") -> tuple[ImageDataset, ImageDataset]:
    """Train and test splits of ``dataset`` at the preset's image size, capped by ``max_train``/``max_test``."""
    p = get_preset(preset)
    size = image_size or p["image_size"]
    train = load(dataset, root=data_root, split="train", size=size)
    test = load(dataset, root=data_root, split=test_split, size=size)
    return cap(train, p["max_train"], seed), cap(test, p["max_test"], seed)


def environment() -> dict:
    """Versions and machine, recorded with every result."""
    return {"ssltutor": __version__, "torch": torch.__version__, "python": sys.version.split()[0],
            "platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def write_metrics(output_dir: str | Path, notebook: str, params: dict, results: dict[str, dict[str, float]],
                  started: float | None = None, extra: dict | None = None) -> Path:
    """Write ``output_dir/metrics.json``: the notebook, its parameters, ``results`` as {variant: {metric: value}},
    duration, device and versions. Returns the path."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean = {v: {k: (None if x is None else float(x)) for k, x in m.items()} for v, m in results.items()}
    record = {"notebook": notebook, "params": dict(params), "results": clean,
              "duration_s": None if started is None else round(time.time() - started, 2),
              "device": str(resolve_device(params.get("device"))), "environment": environment(),
              "command": " ".join(sys.argv), **(extra or {})}
    path = out / "metrics.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path
