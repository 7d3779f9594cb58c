"""I/O at the edges: model folders and image files."""

from .images import make_grid, save_grid, save_images, to_uint8
from .model_folder import load, model_config, read_config, save_model_folder

__all__ = [
    "load",
    "make_grid",
    "model_config",
    "read_config",
    "save_grid",
    "save_images",
    "save_model_folder",
    "to_uint8",
]
