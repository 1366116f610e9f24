"""Datasets for distillation: registered datasets, image folders and .npz files, held as per-class uint8 banks."""
from .bank import ClassBank
from .registry import DatasetInfo, LoadedDataset, dataset_names, list_datasets, load

__all__ = ["ClassBank", "DatasetInfo", "LoadedDataset", "load", "list_datasets", "dataset_names"]
