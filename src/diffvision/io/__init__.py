"""I/O at the edges: model folders and image files."""

from .images import make_grid, save_grid, save_images, to_uint8
from .model_folder import (
    load,
    load_classifier,
    load_feature_net,
    model_config,
    read_config,
    save_classifier,
    save_feature_net,
    save_model_folder,
)

__all__ = [
    "load",
    "load_classifier",
    "load_feature_net",
    "make_grid",
    "model_config",
    "read_config",
    "save_classifier",
    "save_feature_net",
    "save_grid",
    "save_images",
    "save_model_folder",
    "to_uint8",
]
