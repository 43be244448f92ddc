"""Data: the dataset registry, data/cache roots, synthetic CSBM graphs and probe splits.

Typical use::

    from bgrl_werank.data import load_dataset, get_splits

    data = load_dataset("cora", row_normalize=True)        # raw files from the data root
    splits = get_splits(data, "public")                     # [Split(train, val, test)]
    toy = load_dataset("csbm", csbm=dict(num_nodes=2000, homophily=0.9))
"""

from .csbm import make_csbm
from .datasets import DATASET_NAMES, DatasetError, cache_root, get_splits, load_dataset, resolve_data_root
from .splits import Split, random_splits, splits_from_masks

__all__ = [
    "load_dataset",
    "make_csbm",
    "get_splits",
    "resolve_data_root",
    "cache_root",
    "DATASET_NAMES",
    "DatasetError",
    "Split",
    "random_splits",
    "splits_from_masks",
]
