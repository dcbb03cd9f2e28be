"""SwinIR (Liang et al., 2021): image restoration with shifted-window transformers.

Module and parameter names follow the official ``network_swinir.py`` so the released
checkpoints load with ``strict=True``. Two derived buffers differ from the official code: the
shifted-window ``attn_mask`` is computed per input size (and dropped from checkpoints on load),
so one model serves any input size; and inputs are reflect-padded to the window multiple and
cropped back, as the official test script does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .common import num_blocks
from .descriptor import ModelDescriptor

UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "nearest+conv", "")
RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K mean, subtracted by every official SwinIR


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/ws * W/ws, ws*ws, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """(B * H/ws * W/ws, ws*ws, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def shifted_window_mask(h: int, w: int, ws: int, shift: int, device: torch.device) -> torch.Tensor:
    """Attention mask (nW, ws*ws, ws*ws): -100 between tokens that the cyclic shift brought from different regions."""
    img = torch.zeros((1, h, w, 1), device=device)
    region = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            img[:, hs, wsl, :] = region
            region += 1
    windows = window_partition(img, ws).squeeze(-1)
    mask = windows.unsqueeze(1) - windows.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ws x ws windows with a learned relative position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
        coords = coords.flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
        # kept persistent: the official checkpoints store it
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * window_size - 1) + rel[..., 1])
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b_, n, c = x.shape
        qkv = self.qkv(x).reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(b_ // nw, nw, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b_, n, c)
        return self.proj(x)


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int, mlp_ratio: float):
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self._masks: dict[tuple, torch.Tensor] = {}
        # official checkpoints carry attn_mask for their training size; it is derived, so drop it
        self._register_load_state_dict_pre_hook(_drop_attn_mask)

    def mask_for(self, h: int, w: int, device: torch.device) -> torch.Tensor | None:
        if self.shift_size == 0:
            return None
        key = (h, w, str(device))
        mask = self._masks.get(key)
        if mask is None:
            mask = self._masks[key] = shifted_window_mask(h, w, self.window_size, self.shift_size, device)
        return mask

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        b, _, c = x.shape
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        if self.shift_size:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        windows = window_partition(x, self.window_size)
        mask = self.mask_for(h, w, x.device)
        windows = self.attn(windows, None if mask is None else mask.to(windows.dtype))
        x = window_reverse(windows, self.window_size, h, w)
        if self.shift_size:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x = shortcut + x.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


def _drop_attn_mask(state_dict, prefix, *args) -> None:
    state_dict.pop(prefix + "attn_mask", None)


class BasicLayer(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2, mlp_ratio)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, size)
        return x


def conv_block(dim: int, resi_connection: str) -> nn.Module:
    """The conv closing a residual group: one 3x3 conv, or the parameter-saving 3x3-1x1-3x3 bottleneck."""
    if resi_connection == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    if resi_connection == "3conv":
        return nn.Sequential(
            nn.Conv2d(dim, dim // 4, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(dim // 4, dim // 4, 1, 1, 0), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(dim // 4, dim, 3, 1, 1),
        )
    raise ValueError(f"SwinIR: resi_connection must be '1conv' or '3conv', got {resi_connection!r}")


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


def to_image(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x.transpose(1, 2).reshape(x.shape[0], -1, *size)


class RSTB(nn.Module):
    """Residual Swin Transformer Block: a group of Swin blocks, a conv, and a skip."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float,
                 resi_connection: str):
        super().__init__()
        self.residual_group = BasicLayer(dim, depth, num_heads, window_size, mlp_ratio)
        self.conv = conv_block(dim, resi_connection)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return to_tokens(self.conv(to_image(self.residual_group(x, size), size))) + x


class PatchEmbed(nn.Module):
    """Holds the optional LayerNorm applied to the token sequence (patch size is 1 in SwinIR)."""

    def __init__(self, dim: int, patch_norm: bool):
        super().__init__()
        self.norm = nn.LayerNorm(dim) if patch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_tokens(x)
        return self.norm(x) if self.norm is not None else x


class Upsample(nn.Sequential):
    """conv + PixelShuffle(2) per factor 2, or one conv + PixelShuffle(3)."""

    def __init__(self, scale: int, num_feat: int):
        layers: list[nn.Module] = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"SwinIR: pixelshuffle supports scales 2^n and 3, got {scale}")
        super().__init__(*layers)


class SwinIR(nn.Module):
    """SwinIR: conv -> residual Swin transformer groups -> conv + skip -> reconstruction.

    Variants (official configurations): classical SR ``upsampler='pixelshuffle'``, embed_dim 180,
    depths and heads 6x6 (SwinIR-M); lightweight ``'pixelshuffledirect'``, embed_dim 60, 4x6;
    real-world ``'nearest+conv'`` (M, or L: embed_dim 240, 9x6 depths, 8 heads, ``'3conv'``).

    Args:
        upscale: 2, 3, 4, 8 (pixelshuffle); any (pixelshuffledirect); 2 or 4 (nearest+conv); 1 ('').
        in_chans: image channels (3; 1 for gray denoising models).
        img_size: training patch size; only used for the absolute position embedding (``ape``).
        window_size: attention window (8); input is padded to a multiple of it.
        embed_dim, depths, num_heads, mlp_ratio: transformer sizes.
        img_range: 1.0 for [0, 1] images.
        upsampler: one of ``UPSAMPLERS``.
        resi_connection: '1conv' or '3conv'.
        ape, patch_norm: absolute position embedding; LayerNorm after embedding (True in all releases).

    Shapes:
        input (N, in_chans, H, W) in [0, 1], any H, W; output (N, in_chans, H*upscale, W*upscale).
    """

    arch_name = "swinir"

    def __init__(self, upscale: int = 4, in_chans: int = 3, img_size: int = 64, window_size: int = 8,
                 embed_dim: int = 180, depths: tuple[int, ...] = (6, 6, 6, 6, 6, 6),
                 num_heads: tuple[int, ...] = (6, 6, 6, 6, 6, 6), mlp_ratio: float = 2.0, img_range: float = 1.0,
                 upsampler: str = "pixelshuffle", resi_connection: str = "1conv", ape: bool = False,
                 patch_norm: bool = True):
        super().__init__()
        if upsampler not in UPSAMPLERS:
            raise ValueError(f"SwinIR: upsampler must be one of {UPSAMPLERS}, got {upsampler!r}")
        if upsampler == "nearest+conv" and upscale not in (2, 4):
            raise ValueError(f"SwinIR: nearest+conv supports x2 and x4, got {upscale}")
        if len(depths) != len(num_heads):
            raise ValueError("SwinIR: depths and num_heads must have the same length")
        self.hparams = dict(upscale=upscale, in_chans=in_chans, img_size=img_size, window_size=window_size,
                            embed_dim=embed_dim, depths=list(depths), num_heads=list(num_heads),
                            mlp_ratio=mlp_ratio, img_range=img_range, upsampler=upsampler,
                            resi_connection=resi_connection, ape=ape, patch_norm=patch_norm)
        self.upscale = upscale if upsampler else 1
        self.window_size = window_size
        self.img_range = img_range
        self.upsampler = upsampler
        mean = RGB_MEAN if in_chans == 3 else (0.0,) * in_chans
        self.register_buffer("mean", torch.tensor(mean).view(1, in_chans, 1, 1), persistent=False)
        num_feat = 64

        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, patch_norm)
        if ape:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, img_size * img_size, embed_dim))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.layers = nn.ModuleList(
            RSTB(embed_dim, depth, heads, window_size, mlp_ratio, resi_connection)
            for depth, heads in zip(depths, num_heads, strict=True)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = conv_block(embed_dim, resi_connection)

        if upsampler in ("pixelshuffle", "nearest+conv"):
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1),
                                                      nn.LeakyReLU(inplace=True))
        if upsampler == "pixelshuffle":
            self.upsample = Upsample(upscale, num_feat)
            self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)
        elif upsampler == "pixelshuffledirect":
            self.upsample = nn.Sequential(nn.Conv2d(embed_dim, upscale**2 * in_chans, 3, 1, 1),
                                          nn.PixelShuffle(upscale))
        elif upsampler == "nearest+conv":
            self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            if upscale == 4:
                self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        else:
            self.conv_last = nn.Conv2d(embed_dim, in_chans, 3, 1, 1)
        self.apply(_init_weights)

    @property
    def descriptor(self) -> ModelDescriptor:
        c = self.hparams["in_chans"]
        # the network pads itself, but telling callers lets tiles be cut at the multiple and skip the padding
        return ModelDescriptor(arch=self.arch_name, scale=self.upscale, in_channels=c, out_channels=c,
                               size_multiple=self.window_size, tile_overlap=8 * self.window_size,
                               supports_half=False)  # attention logits overflow fp16 (spandrel says the same)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[2], x.shape[3])
        x = self.patch_embed(x)
        if self.hparams["ape"]:
            x = x + self.absolute_pos_embed
        for layer in self.layers:
            x = layer(x, size)
        return to_image(self.norm(x), size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.window_size)
        mean = self.mean.to(x.dtype)
        x = (x - mean) * self.img_range
        feat = self.conv_first(x)
        feat = self.conv_after_body(self.forward_features(feat)) + feat
        if self.upsampler == "pixelshuffle":
            x = self.conv_last(self.upsample(self.conv_before_upsample(feat)))
        elif self.upsampler == "pixelshuffledirect":
            x = self.upsample(feat)
        elif self.upsampler == "nearest+conv":
            feat = self.conv_before_upsample(feat)
            feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
            if self.upscale == 4:
                feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
            x = self.conv_last(self.lrelu(self.conv_hr(feat)))
        else:
            x = x + self.conv_last(feat)
        x = x / self.img_range + mean
        return x[..., : h * self.upscale, : w * self.upscale]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom and right to a multiple: reflect where the image is large enough, else replicate."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def hparams_from_state_dict(sd: dict[str, torch.Tensor]) -> dict | None:
    """Recognise an official SwinIR checkpoint and read its configuration from tensor shapes."""
    table_key = "layers.0.residual_group.blocks.0.attn.relative_position_bias_table"
    if "conv_first.weight" not in sd or table_key not in sd:
        return None
    embed_dim, in_chans = sd["conv_first.weight"].shape[:2]
    num_layers = num_blocks(sd, "layers.")
    depths = [num_blocks(sd, f"layers.{i}.residual_group.blocks.") for i in range(num_layers)]
    num_heads = [sd[f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table"].shape[1]
                 for i in range(num_layers)]
    window_size = (math.isqrt(sd[table_key].shape[0]) + 1) // 2
    mlp_ratio = sd["layers.0.residual_group.blocks.0.mlp.fc1.weight"].shape[0] / embed_dim
    if "conv_up1.weight" in sd:
        upsampler, upscale = "nearest+conv", 4 if "conv_up2.weight" in sd else 2
    elif "conv_before_upsample.0.weight" in sd:
        upsampler, upscale = "pixelshuffle", 1
        for key, w in sd.items():
            if key.startswith("upsample.") and key.endswith(".weight"):
                upscale *= math.isqrt(w.shape[0] // w.shape[1])
    elif "upsample.0.weight" in sd:
        upsampler = "pixelshuffledirect"
        upscale = math.isqrt(sd["upsample.0.weight"].shape[0] // in_chans)
    else:
        upsampler, upscale = "", 1
    img_size = 64
    if "absolute_pos_embed" in sd:
        img_size = math.isqrt(sd["absolute_pos_embed"].shape[1])
    return dict(upscale=upscale, in_chans=in_chans, img_size=img_size, window_size=window_size,
                embed_dim=embed_dim, depths=depths, num_heads=num_heads, mlp_ratio=mlp_ratio,
                upsampler=upsampler, resi_connection="1conv" if "conv_after_body.weight" in sd else "3conv",
                ape="absolute_pos_embed" in sd, patch_norm="patch_embed.norm.weight" in sd)

