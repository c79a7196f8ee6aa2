"""Images enter as whatever a user uploads and leave as (3,H,W) floats in [0,1], upright and in RGB."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from diffloss.images import (
    ImageLoadError,
    from_pil,
    image_size,
    list_images,
    load_image,
    save_image,
    to_pil,
    to_uint8_numpy,
)


def _png_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_16bit_png_keeps_its_precision(tmp_path):
    grad = np.full((8, 32), 30000, dtype=np.uint16)
    grad[1] = np.arange(32, dtype=np.uint16) + 30000  # steps of 1/65535: lost if squeezed through 8 bits
    path = tmp_path / "deep.png"
    Image.fromarray(grad).save(path)
    assert Image.open(path).mode.startswith("I")  # really stored as 16-bit

    t = load_image(path)
    assert t.shape == (3, 8, 32) and t.dtype == torch.float32
    assert t[0, 0, 0].item() == pytest.approx(30000 / 65535, abs=1e-6)
    assert torch.allclose(t[:, 1], torch.from_numpy(grad[1] / 65535).float().expand(3, -1), atol=1e-6)
    assert torch.equal(t[0], t[1]) and torch.equal(t[1], t[2])


def test_rgba_is_composited_over_white():
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (0, 0, 0, 0)  # fully transparent black -> white
    rgba[0, 1] = (255, 0, 0, 255)  # opaque red stays red
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black -> mid grey
    t = load_image(_png_bytes(Image.fromarray(rgba, "RGBA")))
    assert t.shape == (3, 2, 3)
    assert torch.allclose(t[:, 0, 0], torch.ones(3))
    assert torch.allclose(t[:, 0, 1], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(t[:, 0, 2], torch.full((3,), 1 - 128 / 255), atol=1e-6)


def test_palette_with_transparency_is_composited_over_white():
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    img.putpixel((1, 1), 1)
    img.info["transparency"] = 0
    t = load_image(_png_bytes(img, transparency=0))
    assert torch.allclose(t[:, 0, 0], torch.ones(3))
    assert torch.allclose(t[:, 1, 1], torch.tensor([0.0, 1.0, 0.0]))


@pytest.mark.parametrize("mode", ["L", "1", "LA"])
def test_greyscale_gives_three_identical_channels(mode):
    grey = Image.fromarray(np.tile(np.arange(0, 256, 16, dtype=np.uint8), (4, 1))).convert(mode)
    t = load_image(_png_bytes(grey))
    assert t.shape == (3, 4, 16)
    assert torch.equal(t[0], t[1]) and torch.equal(t[1], t[2])
    assert t.max() > 0.5  # not all black


def test_cmyk_and_float_tiff_load_as_rgb():
    cmyk = Image.new("CMYK", (5, 4), (0, 255, 255, 0))  # pure red in CMYK
    t = load_image(_png_bytes(cmyk, "JPEG", quality=100))
    assert t.shape == (3, 4, 5)
    assert t[0].mean() > 0.9 and t[1].mean() < 0.1

    values = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    t = load_image(_png_bytes(Image.fromarray(values, "F"), "TIFF"))
    assert torch.allclose(t[0], torch.from_numpy(values), atol=1e-6)


def test_exif_rotated_jpeg_comes_out_upright(tmp_path):
    stored = np.zeros((20, 40, 3), dtype=np.uint8)  # 40 wide, 20 high as stored
    stored[:, :20] = (255, 0, 0)  # left half red
    stored[:, 20:] = (0, 0, 255)  # right half blue
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    img.save(path, exif=exif, quality=95)

    t = load_image(path)
    assert t.shape == (3, 40, 20)  # portrait after rotation
    assert image_size(path) == (20, 40)  # header-only size agrees
    top, bottom = t[:, :15].mean(dim=(1, 2)), t[:, 25:].mean(dim=(1, 2))
    assert top[0] > 0.8 and top[2] < 0.2  # the red left half is now on top
    assert bottom[2] > 0.8 and bottom[0] < 0.2


def test_corrupt_and_truncated_files_raise_image_load_error_naming_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not an image at all")
    with pytest.raises(ImageLoadError, match="broken.png"):
        load_image(bad)

    good = _png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    cut = tmp_path / "cut.png"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageLoadError, match="cut.png"):
        load_image(cut)
    with pytest.raises(ImageLoadError):
        load_image(b"\x89PNG not really")
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        load_image(tmp_path / "nowhere.png")


def test_max_side_downscales_longer_side_and_never_upscales():
    img = Image.new("RGB", (200, 100), (10, 200, 30))
    small = load_image(img, max_side=50)
    assert small.shape == (3, 25, 50)
    assert torch.allclose(small[:, 5, 5], torch.tensor([10, 200, 30]) / 255, atol=2e-3)
    assert load_image(img, max_side=500).shape == (3, 100, 200)
    jpeg = load_image(_png_bytes(img, "JPEG"), max_side=30)  # JPEG draft decoding path
    assert jpeg.shape == (3, 15, 30)


def test_to_pil_round_trip_and_save(tmp_path):
    t = torch.rand(3, 6, 7, generator=torch.Generator().manual_seed(0))
    arr = to_uint8_numpy(t[None])
    assert arr.shape == (6, 7, 3) and arr.dtype == np.uint8
    assert (from_pil(to_pil(t)) - t).abs().max() <= 0.5 / 255 + 1e-6

    out = to_uint8_numpy(torch.tensor([-1.0, 0.5, 2.0]).view(3, 1, 1))
    assert out.tolist() == [[[0, 128, 255]]]  # clamped and rounded
    with pytest.raises(ValueError, match="shape"):
        to_pil(torch.rand(4, 5, 5))

    path = save_image(t, tmp_path / "sub" / "x.png")
    assert torch.equal(load_image(path), from_pil(to_pil(t)))


def test_list_images_sorted_filtered_and_missing_folder(tmp_path):
    for name in ["b.PNG", "a.jpg", "notes.txt", ".hidden.png", "c.tiff"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.tiff"]
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        list_images(tmp_path / "missing_dir")


# ------------------------------------------------------------------- decoding at the studio's size (issue 25)
def _smooth(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256], -1).astype(np.uint8)


def _floats_seen(monkeypatch) -> list[tuple[int, int]]:
    """The (width, height) of every PIL image converted to float (where memory grows 4x per channel)."""
    from diffloss import images

    seen, real = [], images._from_pil_named
    monkeypatch.setattr(images, "_from_pil_named", lambda img, name: (seen.append(img.size), real(img, name))[1])
    return seen


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "I;16", "1", "CMYK", "F"])
def test_a_large_upload_is_reduced_before_it_becomes_float_and_matches_a_full_resize(tmp_path, monkeypatch, mode):
    """Issue 25, High 2: a 7000x7000 PNG became a 590 MB float image before it was downscaled. Now the float
    conversion sees at most twice ``max_side`` on the longer side, whatever the colour mode, and the result is
    what the full-size float resize gives, within a few 8-bit levels."""
    from diffloss.images import _from_pil_named, _limit_side

    base = Image.fromarray(_smooth(1500, 700))
    img = {"RGBA": lambda: base.convert("RGBA"), "LA": lambda: base.convert("LA"),
           "P": lambda: base.convert("P", palette=Image.Palette.ADAPTIVE), "I;16": lambda: base.convert("I;16"),
           "1": lambda: base.convert("1"), "CMYK": lambda: base.convert("CMYK"), "L": lambda: base.convert("L"),
           "F": lambda: base.convert("F"), "RGB": lambda: base}[mode]()
    path = tmp_path / ("x.tiff" if mode in ("CMYK", "F") else "x.png")
    img.save(path)
    expected = _limit_side(_from_pil_named(Image.open(path), "x"), 100)
    seen = _floats_seen(monkeypatch)
    got = load_image(path, max_side=100)
    assert got.shape == expected.shape == (3, 47, 100)
    assert seen and max(max(size) for size in seen) < 4 * 100  # 7x fewer pixels each way before float
    tolerance = 0.25 if mode == "1" else 0.02  # a dithered 1-bit image is noise at full size
    assert (got - expected).abs().mean() < tolerance


def test_big_decodes_wait_for_one_shared_slot_and_small_ones_never_do(tmp_path, monkeypatch):
    """The memory budget of image work across endpoints: however many requests decode a big upload at once, one
    big decode runs at a time; small images (examples, thumbnails) pass even while it does."""
    import threading
    import time

    from diffloss import images

    monkeypatch.setattr(images, "BIG_IMAGE_PIXELS", 10_000)
    big = tmp_path / "big.png"
    Image.fromarray(_smooth(300, 200)).save(big)
    small = tmp_path / "small.png"
    Image.fromarray(_smooth(50, 50)).save(small)
    active, peak, lock, real = [0], [0], threading.Lock(), images.reduced

    def slow_reduce(img, max_side):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return real(img, max_side)

    monkeypatch.setattr(images, "reduced", slow_reduce)
    threads = [threading.Thread(target=load_image, args=(big, 64)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == images.BIG_DECODE_SLOTS == 1
    with images.decode_slot(10**9):  # the slot is held: a small image still loads at once
        assert load_image(small, max_side=64).shape == (3, 50, 50)


def _png_header_only(path, width: int, height: int):
    """A PNG whose header declares width x height pixels (no pixel data: Image.open reads only the header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_an_image_over_pils_bomb_limit_gets_this_apps_message_not_pils_exception(tmp_path):
    """Issue 25, Low 7: above ~179 MP PIL raises DecompressionBombError in Image.open, before the pixel gate."""
    path = _png_header_only(tmp_path / "bomb.png", 20_000, 20_000)
    for call in (lambda: image_size(path), lambda: load_image(path, max_side=64)):
        with pytest.raises(ImageLoadError, match="bomb.png: more than 179 megapixels, far more than the 50 "
                                                 "megapixels this app decodes: downscale it first") as caught:
            call()
        assert "DecompressionBomb" not in str(caught.value) and "DOS" not in str(caught.value)


def test_a_photo_up_to_twice_the_working_size_is_resized_exactly_as_before(tmp_path):
    """The box reduction only starts above twice ``max_side``: the benchmark photos the report measures (768 px at
    most, read at 256-512 px) decode bit for bit as the full float resize gives them, so its numbers reproduce."""
    from diffloss.images import _from_pil_named, _limit_side

    path = tmp_path / "x.png"
    Image.fromarray(_smooth(511, 300)).save(path)
    expected = _limit_side(_from_pil_named(Image.open(path), "x"), 256)
    assert torch.equal(load_image(path, max_side=256), expected)


def test_a_big_photo_is_reduced_as_far_as_the_working_size_allows(tmp_path, monkeypatch):
    """Above the big-image size, the reduction goes down to the working size itself (the memory bound)."""
    from diffloss import images

    monkeypatch.setattr(images, "BIG_IMAGE_PIXELS", 10_000)
    seen = _floats_seen(monkeypatch)
    path = tmp_path / "x.png"
    Image.fromarray(_smooth(1500, 700)).save(path)
    load_image(path, max_side=100)
    assert max(max(size) for size in seen) < 200
