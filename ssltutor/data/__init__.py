"""Data: load a dataset split into memory (``load``), batch it on the device (``DeviceLoader``), split it (``splits``).

Example::

    from ssltutor import data
    train = data.load("digits", split="train")        # ImageDataset: uint8 (1347, 3, 32, 32), int64 labels
    test = data.load("intel_image", split="test")     # needs $DATA_ROOT/intel_image (the error says how to get it)
    loader = data.DeviceLoader(train.images, train.labels, batch_size=256, generator=torch.Generator())
"""
from .loader import DeviceLoader
from .sources import (
    APTOS_CLASSES,
    DATASETS,
    DEFAULT_SIZE,
    INTEL_CLASSES,
    SPLITS,
    DatasetError,
    DatasetFormatError,
    DatasetNotFoundError,
    ImageDataset,
    aptos_split_indices,
    cache_dirs,
    crop_fundus,
    data_root,
    default_root,
    load,
)
from .splits import (
    Task,
    class_incremental_tasks,
    data_incremental_tasks,
    labelled_fraction,
    stratified_split,
    symmetric_label_noise,
)

__all__ = [
    "load", "DATASETS", "DEFAULT_SIZE", "SPLITS", "INTEL_CLASSES", "APTOS_CLASSES", "ImageDataset",
    "DatasetError", "DatasetNotFoundError", "DatasetFormatError", "data_root", "default_root", "cache_dirs",
    "crop_fundus", "aptos_split_indices", "DeviceLoader", "Task", "stratified_split",
    "labelled_fraction", "symmetric_label_noise", "class_incremental_tasks", "data_incremental_tasks",
]
