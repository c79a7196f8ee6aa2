"""The one place where images cross between files/PIL/numpy and tensors.

Everything else in the library sees float32 tensors in [0, 1], (3, H, W) or (N, 3, H, W). Uploads and benchmark
files come in every colour mode PIL knows (16-bit greyscale, palette with transparency, CMYK, float TIFF, rotated
phone JPEGs), so the conversion rules live here once: alpha is composited over white (what a viewer shows),
16-bit data keeps its precision, and a file that cannot be decoded raises ImageLoadError naming the file.
"""

from __future__ import annotations

import contextlib
import io
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

ImageSource = str | Path | bytes | Image.Image

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SWAPPED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that rotate by 90 degrees
_EXIF_ORIENTATION = 0x0112


MAX_PIXELS = 50_000_000  # a 50-megapixel photo decodes to ~150 MB of RGB; a larger one is refused from its header


BIG_IMAGE_PIXELS = 4_000_000  # a decode above this holds one of BIG_DECODE_SLOTS (a 4 MP RGB photo is 12 MB decoded)
BIG_DECODE_SLOTS = 1  # a 49 MP PNG decodes to 147 MB of 8-bit RGB; one at a time keeps a burst of uploads bounded
_BIG_DECODES = threading.BoundedSemaphore(BIG_DECODE_SLOTS)
_REDUCIBLE_MODES = ("L", "LA", "La", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "I", "F")  # PIL's reduce() box-filters
_REDUCE_AS = {"1": "L", "P": "RGBA", "PA": "RGBA"}  # modes whose values cannot be averaged as they are


class ImageLoadError(ValueError):
    """A file or upload is not a decodable image; the message names the file and the problem."""


def check_pixels(width: int, height: int, name: str, limit: int = MAX_PIXELS) -> None:
    """ImageLoadError when a ``width`` x ``height`` image (read from its header) is over ``limit`` pixels.

    Why before decoding: a small PNG can declare 12000 x 12000 pixels and take gigabytes once decoded; the header
    says so for free.
    """
    if width * height > limit:
        raise ImageLoadError(f"{name}: {width}x{height} px is {width * height / 1e6:.0f} megapixels, more than the "
                             f"{limit / 1e6:.0f} megapixels this app decodes: downscale it first")


def _bomb_error(name: str) -> ImageLoadError:
    """What PIL's DecompressionBombError (raised by ``Image.open`` itself, above ~179 MP) means, in this app's words."""
    return ImageLoadError(f"{name}: more than {2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} megapixels, far more than "
                          f"the {MAX_PIXELS / 1e6:.0f} megapixels this app decodes: downscale it first")


def _describe(source: ImageSource) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return f"<PIL image {getattr(source, 'mode', '?')}>"


def _float_scale(arr: np.ndarray) -> float:
    """Float TIFFs carry no range; assume [0,1], else the 8- or 16-bit range their maximum suggests."""
    peak = float(np.nanmax(arr)) if arr.size else 0.0
    if peak <= 1.0:
        return 1.0
    return 255.0 if peak <= 255.0 else 65535.0


def _to_array(img: Image.Image, name: str) -> np.ndarray:
    """HxWx3 float32 in [0,1] from any PIL mode, keeping 16-bit precision."""
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        # 16-bit greyscale: divide by 65535, never squeeze through 8 bits (that clips everything above 255).
        grey = np.asarray(img).astype(np.float32) / 65535.0
        return np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2)
    if mode == "F":
        grey = np.asarray(img, dtype=np.float32)
        infinite = int(np.isinf(grey).sum())
        if infinite:  # no range can show an infinite pixel; scaling by it would turn the whole image black
            raise ImageLoadError(f"{name}: {infinite} pixel{'s are' if infinite > 1 else ' is'} infinite in this "
                                 "floating-point image: no brightness range can show it; clip it to finite values first")
        grey = np.nan_to_num(grey)
        grey = np.clip(grey / _float_scale(grey), 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=2)
    try:
        if mode in _ALPHA_MODES or "transparency" in img.info:
            rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
            alpha = rgba[..., 3:4]
            return rgba[..., :3] * alpha + (1.0 - alpha)  # over white, as a viewer shows it
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    except (ValueError, OSError) as exc:
        raise ImageLoadError(f"{name}: cannot convert colour mode {mode!r} to RGB ({exc})") from exc


def _from_pil_named(img: Image.Image, name: str) -> torch.Tensor:
    arr = _to_array(img, name)
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous().to(torch.float32)


def from_pil(img: Image.Image) -> torch.Tensor:
    """(3,H,W) float32 in [0,1] from a PIL image of any mode (no EXIF rotation: load_image does that)."""
    return _from_pil_named(img, _describe(img))


def _limit_side(t: torch.Tensor, max_side: int | None) -> torch.Tensor:
    if max_side is None or max(t.shape[-2:]) <= max_side:
        return t
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    h, w = t.shape[-2:]
    scale = max_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    # Antialiased bicubic in float, so 16-bit images keep their precision through the resize.
    small = F.interpolate(t[None], size=size, mode="bicubic", antialias=True, align_corners=False)
    return small[0].clamp(0.0, 1.0)


@contextlib.contextmanager
def decode_slot(pixels: int) -> Iterator[None]:
    """Held while an image of ``pixels`` is decoded: a big one waits for one of ``BIG_DECODE_SLOTS``, shared by every
    caller in the process (every studio endpoint), so a burst of large uploads is decoded one after another instead
    of all at once; a small one passes straight through."""
    if pixels <= BIG_IMAGE_PIXELS:
        yield
        return
    with _BIG_DECODES:
        yield


def reduced(img: Image.Image, max_side: int) -> Image.Image:
    """``img`` box-filtered by the largest whole factor that keeps its longer side at least twice ``max_side``
    (itself when none does), in 8 or 16 bits: the float conversion and the exact antialiased resize then see a few
    megapixels, never the upload's full size (a 49 MP image in float32 is 590 MB). Twice: the antialiased resize
    still makes the last step, so a photo of up to twice the size (every benchmark photo here) is resized exactly
    as before and the report's numbers stay reproducible."""
    if max_side < 1:
        return img
    factor = max(img.size) // (2 * max_side)
    if img.size[0] * img.size[1] > BIG_IMAGE_PIXELS * max(1, factor) ** 2:  # still big: as far as max_side allows
        factor = max(img.size) // max_side
    if factor < 2:
        return img
    mode = img.mode
    if mode.startswith("I;16"):
        img = img.convert("I")  # 16-bit values kept, in a mode reduce() averages
    elif mode in _REDUCE_AS or (mode not in _REDUCIBLE_MODES) or "transparency" in img.info:
        img = img.convert(_REDUCE_AS.get(mode, "RGBA" if "transparency" in img.info else "RGB"))
    return img.reduce(factor)


def load_image(source: ImageSource, max_side: int | None = None) -> torch.Tensor:
    """(3,H,W) float32 in [0,1] from a path, raw bytes or PIL image, upright as a viewer shows it.

    max_side: downscale (antialiased) so the longer side is at most this, so a 12-megapixel upload does not
    become a 12-megapixel tensor. Raises ImageLoadError for corrupt, truncated or non-image input and
    FileNotFoundError for a path that does not exist.
    """
    name = _describe(source)
    if isinstance(source, Image.Image):
        check_pixels(*source.size, name)
        return _limit_side(_from_pil_named(ImageOps.exif_transpose(source), name), max_side)
    if isinstance(source, (str, Path)) and not Path(source).exists():
        raise FileNotFoundError(f"image file not found: {source}")
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        with Image.open(fp) as img:
            check_pixels(*img.size, name)  # from the header, before any pixel is decoded
            with decode_slot(img.size[0] * img.size[1]):
                if max_side is not None and img.format == "JPEG":
                    img.draft(None, (max_side, max_side))  # decode at 1/2..1/8 scale: never below max_side
                img.load()  # decode now, so truncation surfaces here with the file's name
                small = reduced(img, max_side) if max_side is not None else img
                upright = ImageOps.exif_transpose(small)  # on the reduced image: a cheap copy
                tensor = _from_pil_named(upright, name)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise _bomb_error(name) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageLoadError(f"{name}: not a readable image ({exc})") from exc
    return _limit_side(tensor, max_side)


def centre_crop(x: torch.Tensor, side: int) -> torch.Tensor:
    """The central ``side`` x ``side`` square (or the whole extent along a shorter axis), any leading dims."""
    h, w = x.shape[-2:]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return x[..., top:top + side, left:left + side]


def header_orientation(img: Image.Image) -> int:
    """The EXIF orientation of an opened, undecoded image, read without decoding its pixels.

    A PNG's getexif() decodes the whole file to look for an eXIf chunk after the pixels; only one found in the
    header is trusted, which keeps checking a folder of PNGs (or one 49 MP upload) a header-only job.
    """
    if img.format == "PNG" and "exif" not in img.info:
        return 1
    return img.getexif().get(_EXIF_ORIENTATION, 1) or 1


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) as displayed (after EXIF rotation), read from the header only: cheap for whole folders."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            check_pixels(w, h, str(path))
            orientation = header_orientation(img)
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise _bomb_error(str(path)) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageLoadError(f"{path}: not a readable image ({exc})") from exc
    return (h, w) if orientation in _SWAPPED_ORIENTATIONS else (w, h)


def to_uint8_numpy(t: torch.Tensor) -> np.ndarray:
    """HxWx3 uint8 from a (3,H,W) or (1,3,H,W) tensor: clamped to [0,1] and rounded (NaN becomes 0)."""
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"expected an image tensor of shape (3,H,W) or (1,3,H,W), got {tuple(t.shape)}")
    t = torch.nan_to_num(t.detach().to("cpu", torch.float32), nan=0.0).clamp(0.0, 1.0)
    return (t * 255.0).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def to_pil(t: torch.Tensor) -> Image.Image:
    """RGB PIL image from a (3,H,W) or (1,3,H,W) tensor in [0,1]."""
    return Image.fromarray(to_uint8_numpy(t))


def save_image(t: torch.Tensor, path: str | Path) -> Path:
    """Write a (3,H,W) or (1,3,H,W) tensor as an 8-bit PNG (lossless, so saved results can be measured)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(t).save(path, format="PNG")
    return path


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in folder, sorted by file name (hidden files such as macOS '._x.png' skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    ]
    return sorted(files, key=lambda p: p.name)


# ------------------------------------------------------------------------------------ arrays for metrics
# BT.601 luma as in BasicSR's rgb2ycbcr (studio swing: Y in [16,235]/255 for RGB in [0,1]).
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0
_Y_OFFSET = 16.0 / 255.0


def as_hwc(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """One image as a float64 ``HxWx3`` (or ``HxW``) numpy array.

    Accepts torch ``(3,H,W)`` / ``(1,3,H,W)`` and numpy ``HxWx3`` / ``HxW``; a batch of several images is refused
    because every metric here is per image (averaging happens in the caller, where it is visible).
    """
    if isinstance(img, torch.Tensor):
        t = img.detach().to("cpu", torch.float64)
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise ValueError(f"expected one image, got a batch of shape {tuple(t.shape)}")
            t = t[0]
        if t.dim() == 3:
            if t.shape[0] not in (1, 3):
                raise ValueError(f"expected a (3,H,W) tensor, got shape {tuple(t.shape)}")
            arr = t.permute(1, 2, 0).numpy()
            return arr[..., 0] if arr.shape[-1] == 1 else arr
        if t.dim() == 2:
            return t.numpy()
        raise ValueError(f"expected a (3,H,W) or (1,3,H,W) tensor, got shape {tuple(t.shape)}")
    arr = np.asarray(img)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"expected a float image in [0,1], got dtype {arr.dtype} (divide uint8 images by 255)")
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3):
        return arr.astype(np.float64)
    raise ValueError(f"expected an HxWx3 array, got shape {arr.shape}")


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of an ``HxWx3`` RGB array in [0,1], in [0,1] (BasicSR's ``rgb2ycbcr(..., y_only=True)``).

    Grey ``HxW`` input is returned as it is: it already is a single channel.
    """
    if rgb.ndim == 2:
        return rgb
    return rgb @ _Y_WEIGHTS + _Y_OFFSET
