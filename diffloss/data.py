"""Training and evaluation data: paired folders, synthetic pairs from clean photos, crops and flips.

Samplers are stateless: ``batch(batch_size, seed)`` is a pure function of its seed, so the training loop derives
the seed from (run seed, step, rank) and resume or a fair "with vs without DiffLoss" comparison needs no sampler
state. Photos are held in RAM as uint8 (a quarter of float32) and turned into float crops per batch.
Dataset paths are always arguments; nothing here knows where the benchmark data lives.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from . import degrade
from .images import image_size, list_images, load_image

_MAX_LISTED = 10  # names quoted in an error message before "... and N more"


@dataclass
class Batch:
    """One restorer training batch; net_input is what the restorer sees, gt what it should produce."""

    net_input: torch.Tensor  # (N,C,H,W)
    gt: torch.Tensor  # (N,3,H,W)
    lq: torch.Tensor  # (N,3,h,w)
    mask: torch.Tensor | None = None  # (N,1,H,W), inpainting only

    def to(self, device: torch.device | str) -> Batch:
        """The same batch on another device."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(self, net_input=move(self.net_input), gt=move(self.gt), lq=move(self.lq), mask=move(self.mask))


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" ... and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def _to_uint8(img: torch.Tensor) -> torch.Tensor:
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def _to_float(img: torch.Tensor) -> torch.Tensor:
    return img.float() / 255 if img.dtype == torch.uint8 else img.float()


class PairedFolder(torch.utils.data.Dataset):
    """Real pairs in the BasicSR layout: root/lq/NAME and root/gt/NAME, matched by file name.

    Everything that can be wrong with the folder (missing folders, missing partners, size mismatches) is found
    at construction from file names and image headers, so a bad dataset fails before training starts.
    names: optional subset of file names (with or without extension), e.g. hold-out scenes; an unknown name is
    an error rather than a silently smaller set. max_side: downscale each file so its longer side fits.
    """

    def __init__(self, root: str | Path, names: Sequence[str] | None = None, max_side: int | None = None):
        self.root = Path(root)
        self.max_side = max_side
        lq_dir, gt_dir = self.root / "lq", self.root / "gt"
        for folder in (lq_dir, gt_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"paired folder {self.root} has no {folder.name}/ subfolder (needs lq/, gt/)")
        lq_files = list_images(lq_dir)
        if names is not None:
            wanted = set(names)
            lq_files = [p for p in lq_files if p.name in wanted or p.stem in wanted]
            found = {p.name for p in lq_files} | {p.stem for p in lq_files}
            unknown = sorted(n for n in wanted if n not in found)
            if unknown:
                raise ValueError(f"{lq_dir}: requested names not found: {_listing(unknown)}")
        orphans = [p.name for p in lq_files if not (gt_dir / p.name).is_file()]
        if orphans:
            raise ValueError(f"{gt_dir}: missing the ground truth for lq images {_listing(orphans)}")
        if not lq_files:
            raise ValueError(f"{self.root}: no lq/gt image pairs found")
        mismatched = []
        for p in lq_files:
            lq_size, gt_size = image_size(p), image_size(gt_dir / p.name)
            if lq_size != gt_size:
                mismatched.append(f"{p.name} (lq {lq_size[0]}x{lq_size[1]}, gt {gt_size[0]}x{gt_size[1]})")
        if mismatched:
            raise ValueError(f"{self.root}: lq and gt differ in size for {_listing(mismatched)}")
        self.names: list[str] = [p.name for p in lq_files]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict:
        name = self.names[i]
        lq = load_image(self.root / "lq" / name, self.max_side)
        gt = load_image(self.root / "gt" / name, self.max_side)
        return {"lq": lq, "gt": gt, "name": name}


def load_clean_images(folder: str | Path, max_side: int | None = None) -> list[torch.Tensor]:
    """Every image in folder as a uint8 (3,H,W) tensor: 200 photos of 480x320 take ~90 MB instead of ~370 MB."""
    files = list_images(folder)
    if not files:
        raise ValueError(f"no images found in {folder}")
    return [_to_uint8(load_image(f, max_side)) for f in files]


def _randint(g: torch.Generator, high: int) -> int:
    return int(torch.randint(high, (), generator=g).item())


def _pad_to(img: torch.Tensor, size: int) -> torch.Tensor:
    """Pad a float (C,H,W) to at least size x size, centred; reflect when the image is big enough, else replicate."""
    h, w = img.shape[-2:]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph == 0 and pw == 0:
        return img
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(img[None], pad, mode=mode)[0]


def _crop_flip(images: Sequence[torch.Tensor], size: int, g: torch.Generator, flip: bool) -> list[torch.Tensor]:
    """The same random crop (and flip) of equally sized images, as float in [0,1]: keeps pairs aligned."""
    h, w = images[0].shape[-2:]
    if h < size or w < size:
        images = [_pad_to(_to_float(im), size) for im in images]
        h, w = images[0].shape[-2:]
    top, left = _randint(g, h - size + 1), _randint(g, w - size + 1)
    mirror = flip and _randint(g, 2) == 1
    out = []
    for im in images:
        crop = _to_float(im[:, top : top + size, left : left + size])
        out.append(crop.flip(-1) if mirror else crop)
    return out


def random_crop_flip(img: torch.Tensor, size: int, g: torch.Generator, flip: bool = True) -> torch.Tensor:
    """A random size x size float crop in [0,1] of a uint8 or float (3,H,W) image, mirrored left-right half the time.

    Images smaller than size are padded (reflect, or replicate when too small to reflect). Only horizontal
    flips: an upside-down photo is not a natural image, and the diffusion prior should not learn that it is.
    """
    return _crop_flip([img], size, g, flip)[0]


def with_downscaled_copies(images: Sequence[torch.Tensor], scales: Sequence[float] = (0.5,),
                           min_side: int = 64) -> list[torch.Tensor]:
    """The photos plus area-downscaled copies of each (uint8 kept uint8), skipping copies smaller than min_side.

    Why: a 64 px crop of a half-size photo shows coarser structure than any crop of the original, so a prior
    trained on both sees more kinds of image per photo (the usual scale augmentation of denoiser training).
    """
    out = list(images)
    for img in images:
        h, w = img.shape[-2:]
        for s in scales:
            size = (round(h * s), round(w * s))
            if min(size) < min_side:
                continue
            small = F.interpolate(_to_float(img)[None], size=size, mode="area")[0]
            out.append(_to_uint8(small) if img.dtype == torch.uint8 else small)
    return out


def holdout_split(items: Sequence, every: int) -> tuple[list, list]:
    """(kept, held out): every ``every``-th item (the last of each group of ``every``) is held out; 0 holds none.

    Why: a prior's training is monitored on photos it does not train on, without touching the validation set
    that the studio reports on (choosing a recipe on the reported photos would flatter it).
    """
    if every < 0 or every == 1:
        raise ValueError(f"holdout_every must be 0 (none) or >= 2, got {every}")
    if every == 0:
        return list(items), []
    kept = [x for i, x in enumerate(items) if i % every != every - 1]
    held = [x for i, x in enumerate(items) if i % every == every - 1]
    return kept, held


class CleanCropSampler:
    """Batches of clean random crops, for training the diffusion prior.

    ``rotate``: each crop also turned by a random multiple of 90 degrees (off by default: the restorers' batches
    come from here too, and their random draws must not change).
    """

    def __init__(self, images: list[torch.Tensor], crop: int, rotate: bool = False):
        if not images:
            raise ValueError("CleanCropSampler needs at least one image")
        if crop < 1:
            raise ValueError(f"crop must be >= 1, got {crop}")
        self.images = images
        self.crop = crop
        self.rotate = rotate

    def batch(self, batch_size: int, seed: int) -> torch.Tensor:
        """(N,3,crop,crop) float in [0,1]; the same seed gives the same batch."""
        return self._batch(batch_size, torch.Generator().manual_seed(seed))

    def _batch(self, batch_size: int, g: torch.Generator) -> torch.Tensor:
        picks = torch.randint(len(self.images), (batch_size,), generator=g).tolist()
        crops = [random_crop_flip(self.images[i], self.crop, g) for i in picks]
        if self.rotate:
            crops = [torch.rot90(c, _randint(g, 4), dims=(-2, -1)) for c in crops]
        return torch.stack(crops)


class SyntheticPairSampler:
    """Restorer batches made by degrading clean crops on the fly: endless pairs from a folder of clean photos."""

    def __init__(self, images: list[torch.Tensor], task: str, crop: int):
        self.task = degrade.get_task(task)
        m = self.task.size_multiple
        if crop < m:
            raise ValueError(f"crop {crop} is smaller than task {task!r}'s size multiple {m}")
        self.crops = CleanCropSampler(images, crop - crop % m)  # rounded down so sr4 crops divide by 4

    @property
    def crop(self) -> int:
        return self.crops.crop

    def batch(self, batch_size: int, seed: int) -> Batch:
        g = torch.Generator().manual_seed(seed)
        gt = self.crops._batch(batch_size, g)
        d = self.task.degrade(gt, g)
        return Batch(net_input=d.net_input, gt=gt, lq=d.lq, mask=d.mask)


class PairedCropSampler:
    """Restorer batches of aligned random crops from real pairs (e.g. SOTS haze), held in RAM as uint8."""

    def __init__(self, dataset: PairedFolder, task: str, crop: int):
        spec = degrade.get_task(task)
        if spec.name in ("sr4", "inpaint"):
            raise ValueError(
                f"PairedCropSampler needs same-size lq/gt pairs and no mask; task {task!r} does not fit "
                "(use SyntheticPairSampler)"
            )
        if crop < 1:
            raise ValueError(f"crop must be >= 1, got {crop}")
        self.task = spec.name
        self.crop = crop
        self.pairs = []
        for i in range(len(dataset)):
            item = dataset[i]
            self.pairs.append((_to_uint8(item["lq"]), _to_uint8(item["gt"])))

    def batch(self, batch_size: int, seed: int) -> Batch:
        g = torch.Generator().manual_seed(seed)
        picks = torch.randint(len(self.pairs), (batch_size,), generator=g).tolist()
        crops = [_crop_flip(self.pairs[i], self.crop, g, flip=True) for i in picks]
        lq = torch.stack([c[0] for c in crops])
        gt = torch.stack([c[1] for c in crops])
        return Batch(net_input=degrade.prepare_input(self.task, lq), gt=gt, lq=lq)


class MixedSampler:
    """Batches drawing each sample from one of several Batch samplers with the given probabilities.

    E.g. haze: real SOTS pairs plus synthetic haze on clean photos. Each source is asked once per batch for its
    share, with a seed derived from the batch seed, so the mix is as reproducible as its parts.
    """

    def __init__(self, samplers: Sequence, weights: Sequence[float]):
        if not samplers or len(samplers) != len(weights):
            raise ValueError(f"need one weight per sampler, got {len(samplers)} samplers and {len(weights)} weights")
        w = torch.tensor([float(x) for x in weights], dtype=torch.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be non-negative with a positive sum, got {list(weights)}")
        self.samplers = list(samplers)
        self.weights = w / w.sum()

    def batch(self, batch_size: int, seed: int) -> Batch:
        g = torch.Generator().manual_seed(seed)
        source = torch.multinomial(self.weights, batch_size, replacement=True, generator=g)
        sub_seeds = torch.randint(2**62, (len(self.samplers),), generator=g).tolist()
        parts, order = [], []
        for k, sampler in enumerate(self.samplers):
            where = (source == k).nonzero().flatten()
            if len(where):
                parts.append(sampler.batch(len(where), sub_seeds[k]))
                order.append(where)
        shapes = {(tuple(p.net_input.shape[1:]), tuple(p.gt.shape[1:])) for p in parts}
        if len(shapes) > 1:
            raise ValueError(f"MixedSampler sources give different sample shapes (net_input, gt): {sorted(shapes)}")
        masks = [p.mask for p in parts]
        if any(m is None for m in masks) and not all(m is None for m in masks):
            raise ValueError("MixedSampler cannot mix sources with and without masks")
        # Put each sample back at the position its source was drawn for, so sources interleave in the batch.
        inverse = torch.argsort(torch.cat(order))
        cat = lambda ts: torch.cat(ts)[inverse]  # noqa: E731
        return Batch(
            net_input=cat([p.net_input for p in parts]),
            gt=cat([p.gt for p in parts]),
            lq=cat([p.lq for p in parts]),
            mask=None if masks[0] is None else cat(masks),
        )
