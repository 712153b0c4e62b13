"""Decoding images safely: every command reads photos through here so bad files fail the same clear way."""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import NoReturn

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from occluface.errors import ImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"})

#: Refuse images with more pixels than this (a 20k x 20k "decompression bomb" would need 1.2 GB as RGB).
MAX_PIXELS = 64_000_000


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _open(source: str | Path | bytes, name: str) -> Image.Image:
    img = None
    try:
        if isinstance(source, (bytes, bytearray)):
            if len(source) == 0:
                raise ImageError(name, "empty file (0 bytes)")
            img = Image.open(io.BytesIO(source))
        else:
            path = Path(source)
            if not path.exists():
                raise ImageError(name, "no such file")
            if path.is_dir():
                raise ImageError(name, "is a folder, not an image")
            if path.stat().st_size == 0:
                raise ImageError(name, "empty file (0 bytes)")
            img = Image.open(path)
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise ImageError(name, f"image is {w}x{h} pixels, more than the {MAX_PIXELS:,} allowed")
        img.load()
    except BaseException:
        if img is not None:  # do not leak the file handle of a refused or broken file (long-running servers)
            img.close()
        _reraise_as_image_error(name)
    return img


def _reraise_as_image_error(name: str) -> NoReturn:
    """Re-raise the exception being handled as an ImageError naming the file (ImageErrors pass through)."""
    try:
        raise
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(name, "not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(name, f"refused as a decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ImageError(name, f"corrupt or truncated image ({exc})") from None


def load_pil(source: str | Path | bytes, *, name: str | None = None, mode: str = "RGB") -> Image.Image:
    """Decode, honour EXIF orientation and convert (16-bit, CMYK, palette, grey -> ``mode``)."""
    label = name or (str(source) if not isinstance(source, (bytes, bytearray)) else "<upload>")
    img = _open(source, label)
    try:
        img = ImageOps.exif_transpose(img)
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16/32-bit and float: stretch to 8 bits
            arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
            span = float(arr.max() - arr.min()) or 1.0
            img = Image.fromarray(((arr - arr.min()) / span * 255).astype(np.uint8), "L")
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            img = img.convert("RGBA")
            background = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, img)
        return img.convert(mode)
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:  # e.g. broken EXIF or palette
        raise ImageError(label, f"cannot convert image to {mode} ({exc})") from None


def load_rgb(source: str | Path | bytes, *, name: str | None = None) -> np.ndarray:
    """Return an ``H x W x 3`` uint8 RGB array."""
    return np.asarray(load_pil(source, name=name, mode="RGB"))
