"""Which real images each matching step sees: random (IDC) or k-means representatives (DREAM)."""
from .base import Selector, create_selector, list_selectors, random_subset
from .kmeans import KMeansResult, kmeans, nearest_to_centroids
from .random import RandomSelector
from .greedy import HerdingSelector, KCenterSelector, herding_order, kcenter_order
from .representative import RepresentativeSelector, embed_images

__all__ = ["HerdingSelector", "KCenterSelector", "herding_order", "kcenter_order", "KMeansResult", "RandomSelector", "RepresentativeSelector", "Selector", "create_selector",
           "embed_images", "kmeans", "list_selectors", "nearest_to_centroids", "random_subset"]
