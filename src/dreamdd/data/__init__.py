"""Datasets for distillation: registered datasets, image folders and .npz files, held as per-class uint8 banks."""
from .bank import ClassBank
from .registry import (DatasetInfo, LoadedDataset, dataset_names, dataset_reference, list_datasets, load,
                       load_configured, prepare)

__all__ = ["ClassBank", "DatasetInfo", "LoadedDataset", "load", "load_configured", "list_datasets", "dataset_names",
           "dataset_reference", "prepare"]
