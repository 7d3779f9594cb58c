"""Networks: the U-Net denoiser backbone."""

from .unet import PRESETS, UNet, UNetConfig, build_unet

__all__ = ["PRESETS", "UNet", "UNetConfig", "build_unet"]
