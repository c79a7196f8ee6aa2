"""A tiny studio world in a tmp folder: a tiny prior, a width-8 restorer pair, clean photos, an empty runs folder."""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from diffloss import nets
from diffloss.images import save_image
from studio.models import Registry
from tests.helpers import tiny_prior


@dataclass
class World:
    root: Path
    registry: Registry
    photo: Path  # a 64x48 RGB photo
    clean: Path  # a folder of three 64x64 clean photos (the examples), three others in train/

    def labels(self, task: str = "noise") -> tuple[str, str]:
        l2, dl = self.registry.default_pair(task)
        return l2, dl


def save_pair(pretrained: Path, task: str = "noise", in_channels: int = 3) -> None:
    """An L2 and a DiffLoss restorer (width 8, different weights) as the zoo would ship them."""
    for i, arm in enumerate(("l2", "diffloss")):
        torch.manual_seed(i)
        model = nets.Restorer(nets.RestorerConfig(task=task, in_channels=in_channels, width=8))
        with torch.no_grad():  # the last conv starts at zero; make the arms differ from the input and each other
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))
        nets.save_restorer(model, pretrained / "restorers" / task / arm, card={"data": {"diffloss": arm == "diffloss"}})


def make_world(root: Path, with_prior: bool = True, with_restorers: bool = True) -> World:
    pretrained = root / "pretrained"
    pretrained.mkdir(parents=True)
    if with_prior:
        tiny_prior().save_pretrained(pretrained / "prior")
    if with_restorers:
        save_pair(pretrained)
    g = torch.Generator().manual_seed(0)
    photo = save_image(torch.rand(3, 48, 64, generator=g), root / "photo.png")
    clean = root / "clean"
    for i in range(3):
        save_image(torch.rand(3, 64, 64, generator=g), clean / f"{i}.png")
    held = torch.Generator().manual_seed(1)  # the shipped training photos (examples/train/): other photos
    for i in range(3):
        save_image(torch.rand(3, 64, 64, generator=held), clean / "train" / f"t{i}.png")
    return World(root, Registry(pretrained, root / "runs", examples=clean), photo, clean)


def write_png(path: Path, array: np.ndarray, mode: str | None = None, exif_orientation: int | None = None) -> Path:
    img = Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)
    kwargs = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif
    img.save(path, **kwargs)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def launched_studio(root: Path, registry: Registry | None = None, hosted: bool = False) -> Iterator[tuple[str, World | None]]:
    """The real app on a free local port, serving a tiny world (or ``registry``, e.g. the shipped models); yields
    (url, world or None) and shuts it down after. ``hosted``: in hosted mode, as on a Space (``--public``)."""
    import os

    import app
    from studio import hosting
    from studio.models import set_registry

    previous = os.environ.get(hosting.PUBLIC_ENV)
    if hosted:
        hosting.enable_public()
    world = make_world(root) if registry is None else None
    set_registry(world.registry if world is not None else registry)
    demo = app.build_demo()
    demo.queue().launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                        allowed_paths=app.allowed_paths(), **hosting.launch_options())
    try:
        yield demo.local_url, world
    finally:
        demo.close()
        set_registry(None)
        if previous is None:
            os.environ.pop(hosting.PUBLIC_ENV, None)
        else:
            os.environ[hosting.PUBLIC_ENV] = previous


def zip_pair(world: World, path: Path, task: str = "noise") -> Path:
    """The world's shipped pair zipped as the Train tab's download lays it out (l2/ and diffloss/ model folders)."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for arm in ("l2", "diffloss"):
            for f in (world.root / "pretrained" / "restorers" / task / arm).iterdir():
                archive.write(f, f"{arm}/{f.name}")
    return path
