"""U-Net denoiser network in the ADM / DDPM++ line (Ho et al. 2020; Dhariwal & Nichol 2021).

Residual blocks with group norm and adaptive scale/shift from the noise-level embedding,
self-attention at chosen levels, dropout, a class embedding with a null class (for
classifier-free guidance) and optional extra input channels for conditioning images.

The network is called as ``net(x, c_noise, cond=None)``:

- ``x``: ``N x C x H x W`` (any H, W; odd sizes are handled by resizing on the way up);
- ``c_noise``: ``(N,)`` noise input chosen by the :class:`~diffvision.denoiser.Denoiser`
  (a timestep, a time in [0, 1] or ``ln(sigma)/4``);
- ``cond``: None, a ``(N,)`` long tensor of class labels (``num_classes`` is the null class), or a
  dict with ``"labels"`` and/or ``"image"`` (``N x cond_channels x H x W``).

It returns a tensor shaped like ``x`` with ``out_channels`` channels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..process import check_int, is_int

__all__ = ["PRESETS", "UNet", "UNetConfig"]


@dataclass
class UNetConfig:
    """Everything needed to rebuild a :class:`UNet` (stored in a model folder's config.json)."""

    in_channels: int = 3
    out_channels: int | None = None  # default: in_channels
    channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attn_levels: tuple[int, ...] = (1,)  # levels (0 = full resolution) with self-attention
    head_channels: int = 32
    dropout: float = 0.1
    num_classes: int = 0  # 0: unconditional; else labels 0..num_classes-1, null = num_classes
    cond_channels: int = 0  # extra input channels (conditioning image)
    groups: int = 8

    def __post_init__(self):
        # Checked field by field: a config.json from elsewhere is input, and a wrong type would
        # otherwise surface deep in the network's construction as an unrelated error.
        if self.out_channels is None:
            self.out_channels = self.in_channels
        for name in ("in_channels", "out_channels", "channels", "head_channels", "groups"):
            check_int(name, getattr(self, name), 1)
        for name in ("num_res_blocks", "num_classes", "cond_channels"):
            check_int(name, getattr(self, name), 0)
        for name in ("channel_mult", "attn_levels"):
            if not isinstance(getattr(self, name), list | tuple):
                raise ValueError(f"{name} must be a list of integers, not {getattr(self, name)!r}")
        self.channel_mult = tuple(self.channel_mult)
        self.attn_levels = tuple(self.attn_levels)
        if not self.channel_mult:
            raise ValueError("channel_mult must name at least one level")
        for mult in self.channel_mult:
            check_int("channel_mult", mult, 1)
        for level in self.attn_levels:
            if not (is_int(level) and 0 <= level < len(self.channel_mult)):
                raise ValueError(
                    f"attn_levels must be levels 0..{len(self.channel_mult) - 1}, not {level!r}"
                )
        if isinstance(self.dropout, bool) or not (
            isinstance(self.dropout, int | float) and 0 <= self.dropout < 1
        ):
            raise ValueError(f"dropout must be a number in [0, 1), not {self.dropout!r}")
        if self.channels % self.groups:
            raise ValueError("channels must be divisible by groups")

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, dict] = {
    # A few thousand parameters' worth of U-Net for tests (seconds on a CPU).
    "tiny": {
        "channels": 16,
        "channel_mult": (1, 2),
        "num_res_blocks": 1,
        "attn_levels": (1,),
        "head_channels": 16,
        "dropout": 0.0,
        "groups": 4,
    },
    # ~1-2 M parameters: trains on a laptop CPU in minutes at 8x8 to 32x32.
    "small": {
        "channels": 32,
        "channel_mult": (1, 2, 2),
        "num_res_blocks": 2,
        "attn_levels": (2,),
        "head_channels": 32,
        "dropout": 0.1,
        "groups": 8,
    },
    # ~35 M parameters: the DDPM CIFAR-10 configuration (GPU).
    "base": {
        "channels": 128,
        "channel_mult": (1, 2, 2, 2),
        "num_res_blocks": 2,
        "attn_levels": (1,),
        "head_channels": 64,
        "dropout": 0.1,
        "groups": 32,
    },
}


def positional_embedding(c_noise: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of the noise input (Vaswani et al. 2017; DDPM): ``N x dim``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=c_noise.device) / half)
    args = c_noise.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class Dropout(nn.Module):
    """Element-wise dropout with probability ``p``, with a cheaper mask than ``nn.Dropout`` on the
    CPU.

    ``nn.Dropout`` draws one float per element through ``bernoulli_``; on a 2-core CPU that was
    8-12% of a small U-Net's training step. Here each element gets 16 random bits (four per 64-bit
    draw) and is dropped when they fall below ``p`` rounded to a multiple of 1/65536 (0.1 becomes
    0.100006); kept elements are scaled by ``1 / (1 - p_rounded)``, so the expectation of the
    output equals the input, as with ``nn.Dropout``. Other devices use ``F.dropout``.
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = p
        self.drop = round(p * 65536)  # dropped when the 16 bits, as 0..65535, are below this

    def forward(self, h: Tensor) -> Tensor:
        if not self.training or self.drop == 0:
            return h
        if h.device.type != "cpu":
            return F.dropout(h, self.p, training=True)
        n = h.numel()
        draws = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
        bits = draws.view(torch.int16)[:n]
        if h.is_contiguous(memory_format=torch.channels_last):  # the mask in h's layout
            bits = torch.as_strided(bits, h.shape, h.stride())
        else:
            bits = bits.view(h.shape)
        keep = (bits >= self.drop - 32768).to(h.dtype)  # int16 covers -32768..32767
        return h * keep.mul_(65536 / (65536 - self.drop))

    def extra_repr(self) -> str:
        return f"p={self.p}"


#: A bfloat16 channels-last CPU tensor with at most this many channels per group and at most
#: :data:`NORM_AS_CONTIGUOUS_MAX_PIXELS` pixels per channel (H x W) is group-normed as a
#: contiguous copy: there torch's channels-last bf16 kernel took 1.4-5.9x the time of the copy
#: and the contiguous kernel together (4-12 channels per group, 4-16 px sides); with 32 px sides
#: or 16 channels per group it was 2.9-12x faster (torch 2.14, a CPU with AVX-512 BF16;
#: bench/results/group_norm_layout.md). In the photos prior's U-Net (4-12 channels per group)
#: a bf16 forward call on 128 tiles of 32 px took 171 ms against 203 without the copies.
NORM_AS_CONTIGUOUS_MAX_GROUP_CHANNELS = 15
NORM_AS_CONTIGUOUS_MAX_PIXELS = 256


def norm_as_contiguous(h: Tensor, groups: int) -> bool:
    """Whether to group-norm ``h`` (``N x C x H x W``, ``groups`` groups) as a contiguous copy:
    a bfloat16 CPU tensor in channels-last memory with at most
    :data:`NORM_AS_CONTIGUOUS_MAX_GROUP_CHANNELS` channels per group and
    :data:`NORM_AS_CONTIGUOUS_MAX_PIXELS` pixels, at inference (no gradient through ``h``: a
    training step was no faster, and the bytes autograd keeps would then change with the size
    in steps, which the training memory check's extrapolation in the size does not follow)."""
    return (
        not h.requires_grad
        and h.device.type == "cpu"
        and h.dtype == torch.bfloat16
        and h.ndim == 4
        and h.shape[1] // groups <= NORM_AS_CONTIGUOUS_MAX_GROUP_CHANNELS
        and h.shape[-2] * h.shape[-1] <= NORM_AS_CONTIGUOUS_MAX_PIXELS
        and not h.is_contiguous()
        and h.is_contiguous(memory_format=torch.channels_last)
    )


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` (the same parameters) that norms small bfloat16 channels-last CPU
    tensors as contiguous copies (:func:`norm_as_contiguous`), returning channels-last."""

    def forward(self, h: Tensor) -> Tensor:
        if norm_as_contiguous(h, self.num_groups):
            return super().forward(h.contiguous()).contiguous(memory_format=torch.channels_last)
        return super().forward(h)


def modulated_group_norm(norm: nn.GroupNorm, h: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """``norm(h) * (1 + scale) + shift`` with ``scale``, ``shift`` of shape ``N x C`` (adaptive
    group norm, ADM's scale-shift norm).

    For a contiguous ``h`` it is one ``group_norm`` call on ``h`` seen as ``1 x NC x H x W`` with
    ``N * groups`` groups (sample n's groups are groups n*G..n*G+G-1) and the per-sample affine
    ``weight * (1 + scale)``, ``bias * (1 + scale) + shift`` folded in. On a 2-core CPU this was
    2.5-10x faster forward (1.3x with the backward) than group norm followed by a broadcast
    multiply-add. Other layouts (channels-last) take the two-step path, except where a
    contiguous copy is faster (:func:`norm_as_contiguous`)."""
    n, c = h.shape[:2]
    gain = 1 + scale
    if not h.is_contiguous():
        if norm_as_contiguous(h, norm.num_groups):
            out = modulated_group_norm(norm, h.contiguous(), scale, shift)
            return out.contiguous(memory_format=torch.channels_last)
        return torch.addcmul(shift[:, :, None, None], norm(h), gain[:, :, None, None])
    weight = (norm.weight * gain).reshape(-1)
    bias = (norm.bias * gain + shift).reshape(-1)
    flat = h.reshape(1, n * c, *h.shape[2:])
    return F.group_norm(flat, n * norm.num_groups, weight, bias, norm.eps).view_as(h)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, adaptive scale/shift from the embedding, dropout, conv (zero-init)."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = GroupNorm(groups, cout)
        self.dropout = Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb).chunk(2, dim=1)
        h = self.conv2(self.dropout(F.silu(modulated_group_norm(self.norm2, h, scale, shift))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions, residual, output projection zero-init."""

    def __init__(self, ch: int, head_channels: int, groups: int):
        super().__init__()
        self.heads = max(ch // head_channels, 1)
        self.norm = GroupNorm(groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        # The 1x1 convolutions applied as matrix products on N x HW x C tokens (faster on the
        # CPU than 1x1 convolutions; same parameters and result).
        tokens = self.norm(x).flatten(2).transpose(1, 2)
        qkv = F.linear(tokens, self.qkv.weight.flatten(1), self.qkv.bias)
        q, k, v = qkv.reshape(n, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, h * w, c)
        out = F.linear(out, self.proj.weight.flatten(1), self.proj.bias)
        return x + out.transpose(1, 2).reshape(n, c, h, w)


class UNet(nn.Module):
    """The U-Net; see the module docstring for the call signature."""

    def __init__(self, config: UNetConfig | None = None, **overrides):
        super().__init__()
        cfg = config or UNetConfig(**overrides)
        self.config = cfg
        ch, groups = cfg.channels, cfg.groups
        emb_dim = 4 * ch
        self.noise_mlp = nn.Sequential(
            nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.class_emb = nn.Embedding(cfg.num_classes + 1, emb_dim) if cfg.num_classes else None
        self.conv_in = nn.Conv2d(cfg.in_channels + cfg.cond_channels, ch, 3, padding=1)

        def block(cin, cout, level):
            layers = nn.ModuleList([ResBlock(cin, cout, emb_dim, cfg.dropout, groups)])
            if level in cfg.attn_levels:
                layers.append(Attention(cout, cfg.head_channels, groups))
            return layers

        self.down = nn.ModuleList()
        skips = [ch]
        cur = ch
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                self.down.append(block(cur, ch * mult, level))
                cur = ch * mult
                skips.append(cur)
            if level < len(cfg.channel_mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(cur, cur, 3, stride=2, padding=1)]))
                skips.append(cur)
        self.mid = nn.ModuleList(
            [
                ResBlock(cur, cur, emb_dim, cfg.dropout, groups),
                Attention(cur, cfg.head_channels, groups),
                ResBlock(cur, cur, emb_dim, cfg.dropout, groups),
            ]
        )
        self.up = nn.ModuleList()
        for level in reversed(range(len(cfg.channel_mult))):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(block(cur + skips.pop(), ch * cfg.channel_mult[level], level))
                cur = ch * cfg.channel_mult[level]
            if level > 0:
                self.up.append(nn.ModuleList([nn.Conv2d(cur, cur, 3, padding=1)]))
        self.norm_out = GroupNorm(groups, cur)
        self.conv_out = nn.Conv2d(cur, cfg.out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: Tensor, c_noise: Tensor, cond=None) -> Tensor:
        labels, image = _split_cond(cond)
        cfg = self.config
        emb = self.noise_mlp(
            positional_embedding(c_noise.reshape(-1).expand(x.shape[0]), cfg.channels)
        )
        if self.class_emb is not None:
            if labels is None:
                labels = torch.full(
                    (x.shape[0],), cfg.num_classes, device=x.device, dtype=torch.long
                )
            emb = emb + self.class_emb(labels.long())
        elif labels is not None:
            raise ValueError("this network was built without classes (num_classes = 0)")
        if cfg.cond_channels:
            if image is None:
                raise ValueError(
                    f"this network needs a {cfg.cond_channels}-channel condition image"
                )
            x = torch.cat([x, image.to(x.dtype)], dim=1)
        h = self.conv_in(x)
        hs = [h]
        for layers in self.down:
            h = _apply(layers, h, emb)
            hs.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for layers in self.up:
            if isinstance(layers[0], ResBlock):
                skip = hs.pop()
                h = _apply(layers, torch.cat([h, skip], dim=1), emb)
            else:  # upsample to the size of the next skip connection (handles odd sizes)
                h = layers[0](F.interpolate(h, size=hs[-1].shape[-2:], mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


def _apply(layers: nn.ModuleList, h: Tensor, emb: Tensor) -> Tensor:
    for layer in layers:
        h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
    return h


def _split_cond(cond) -> tuple[Tensor | None, Tensor | None]:
    if cond is None:
        return None, None
    if isinstance(cond, dict):
        unknown = set(cond) - {"labels", "image"}
        if unknown:
            raise ValueError(f"unknown condition keys: {sorted(unknown)}")
        return cond.get("labels"), cond.get("image")
    return cond, None


def build_unet(preset: str = "small", **overrides) -> UNet:
    """A U-Net from a preset (``tiny``, ``small``, ``base``) with overrides such as
    ``in_channels``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    return UNet(UNetConfig(**{**PRESETS[preset], **overrides}))
