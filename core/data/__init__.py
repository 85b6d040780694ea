"""Datasets as in-memory tensors (images float32 in [0, 1], shape (N, C, H, W)) and images as a
model's input. Imports nothing else of ``core``."""
from .images import border_level, convert_images, image_to_tensor, read_image, suggest_inversion
from .load import DATASETS, EMBEDDED, default_dataset, load_dataset
from .locate import SYSTEM_DATA, available_datasets, data_roots, find_files, search_folders
from .sources import read_idx
from .split import SPLIT_SEED, SPLITS, DataError, DataSplit, data_digest

__all__ = ["DATASETS", "EMBEDDED", "SYSTEM_DATA", "available_datasets", "default_dataset", "data_roots", "find_files",
           "search_folders", "SPLITS", "SPLIT_SEED", "DataError", "DataSplit", "load_dataset", "read_idx",
           "image_to_tensor", "read_image", "convert_images", "data_digest", "border_level", "suggest_inversion"]
