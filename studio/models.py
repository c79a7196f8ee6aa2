"""What the studio can run: shipped and trained restorers, the prior, examples; each loaded once and cached.

Where things are looked for (all roots configurable, so tests and other clones can point elsewhere):

- shipped restorers: ``pretrained/restorers/<task>/<arm>/`` (the task's family, ``diffloss.family``) (config.json + model.safetensors + card.json)
- trained restorers: ``runs/<name>/model`` (one CLI run) and ``runs/<name>/{l2,diffloss}/model`` (a Train-tab pair);
  a stopped pair's arms as exported at the stop, ``runs/<name>/{l2,diffloss}/export``, when asked for ``partial``
- the prior: ``pretrained/prior``, or any diffusers UNet2DModel folder or hub id the user types
- example photos: ``examples/*.png`` (falls back to the benchmark clean/val folder when it is beside the repo)
- photos a Train run uses when given none: ``examples/train/*.png``, never one of the examples above
- photos to calibrate DiffLoss weights on: the benchmark clean/val folder, else the clean examples

Loading is cached per (path, file modification time) behind one lock, so two browser tabs asking for the same
model at once load it once, and a run retrained in place is picked up.
"""

from __future__ import annotations

import importlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from diffloss import nets
from diffloss.checkpoint import CARD_FILE, CONFIG_FILE, MODEL_FILE, CheckpointError
from diffloss.images import list_images
# REPO, datasets_folder and runs_folder are defined in diffloss.paths; importable here too for the studio's tests.
from diffloss.paths import ARMS, EXAMPLES, MODEL_DIR, PARTIAL, PRETRAINED, REPO, RunFolder, datasets_folder, runs_folder, shown_path  # noqa: F401
from diffloss.family import SHOWCASE_ARM, shipped_restorers
from diffloss.prior import DiffusionPrior, PriorLoadError
from studio import hosting, visitors
from studio.memo import Memo, file_stamp

SHIPPED_PRIOR = "shipped prior (pretrained/prior)"
TRAINING_EXAMPLES = "train"  # examples/train/: what a Train run uses when given no photos (held out from Compare)


@dataclass(frozen=True)
class RestorerEntry:
    """One restorer the app can run: a label for the dropdown, its folder, task and arm."""

    label: str
    path: Path
    task: str
    arm: str  # "l2", "diffloss" or "?" when the folder does not say
    source: str  # "shipped" or "run"


def is_degraded_example(path: Path) -> bool:
    """An example named ``<task>_*`` is an already degraded photo (hazy, rainy, dark); others (``clean_*``) are
    clean. Inpainting has no degraded examples: its mask cannot be read off a photo."""
    from diffloss import degrade

    prefix = path.name.split("_", 1)[0]
    return prefix in degrade.TASKS and prefix != "inpaint"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _is_model_folder(folder: Path) -> bool:
    return (folder / CONFIG_FILE).is_file() and (folder / MODEL_FILE).is_file()


def _arm_of(folder: Path, hint: str | None) -> str:
    """The arm from the card (``data.diffloss``), else from a folder name (``l2``/``diffloss``), else '?'."""
    card = _read_json(folder / CARD_FILE)
    flag = card.get("data", {}).get("diffloss") if isinstance(card.get("data"), dict) else None
    if isinstance(flag, bool):
        return "diffloss" if flag else "l2"
    if hint in ARMS:
        return hint
    name = folder.name.lower() if folder.name != MODEL_DIR else folder.parent.name.lower()
    for arm in ARMS:
        if name.endswith(arm) or name == arm:
            return arm
    return "?"


MAX_CACHED_RESTORERS = 16  # a Compare pair, Inspect's restorer and a Train start per visitor, a few visitors
MAX_CACHED_PRIORS = 2  # the shipped prior and one typed in


class LruCache(OrderedDict):
    """A dict of at most ``size`` entries that forgets the least recently used one: every visitor's uploaded
    restorers would otherwise stay in memory for good. Not thread-safe by itself (the registry holds its lock)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get(self, key, default=None):
        if key not in self:
            return default
        self.move_to_end(key)
        return self[key]

    def put(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


def _prior_stamp(folder: Path) -> float:
    """The newest modification time among a prior folder's model files (top level and ``unet/``, ``scheduler/``),
    so a prior retrained in place is loaded again. Never a walk of the tree: a typed "/" or "~" must not make
    every request crawl the disk; a folder without a diffusers config is refused."""
    files = [f for sub in ("", "unet", "scheduler") for f in (folder / sub).glob("*") if f.suffix in
             (".json", ".safetensors", ".bin")]
    if not any(f.name == CONFIG_FILE for f in files):
        raise PriorLoadError(f"{folder}: no UNet2DModel found, it holds no diffusers model (no {CONFIG_FILE} in it "
                             "or in its unet/ folder)")
    return max(f.stat().st_mtime for f in files)


class Registry:
    """Discovers models under its roots and loads them once (thread-safe)."""

    def __init__(
        self, pretrained: str | Path = PRETRAINED, runs: str | Path | None = None,
        examples: str | Path | None = EXAMPLES, device: str | torch.device | None = None,
    ) -> None:
        self.pretrained = Path(pretrained)
        self.runs = Path(runs) if runs is not None else runs_folder()
        self.examples = Path(examples) if examples is not None else None
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._lock = threading.Lock()
        self._restorers: LruCache = LruCache(MAX_CACHED_RESTORERS)
        self._priors: LruCache = LruCache(MAX_CACHED_PRIORS)
        self._report: Memo[dict | None] = Memo(1)  # read once per version of the file, not per Compare

    # ------------------------------------------------------------------------------------------ discovery
    @property
    def shipped_prior_path(self) -> Path:
        return self.pretrained / "prior"

    def has_shipped_prior(self) -> bool:
        return (self.shipped_prior_path / "config.json").is_file() or (self.shipped_prior_path / "unet").is_dir()

    def shipped_band_boxes(self) -> tuple[int, int | None]:
        """What the t band boxes start with: the shipped prior's band (``diffloss.prior_band``; read from its file,
        no load), else 0 and None (the whole schedule). Numbers, not empty boxes: an HTTP caller may leave them out."""
        from diffloss.prior_band import read_band

        try:
            band = read_band(self.shipped_prior_path) if self.has_shipped_prior() else None
        except ValueError:
            band = None  # the prior's load says why
        return (band.t_min, band.t_max) if band else (0, None)

    def restorers(self, task: str | None = None, visible: visitors.RunFilter | None = None,
                  partial: bool = False) -> list[RestorerEntry]:
        """Shipped restorers first, then trained runs (newest first); only those for ``task`` when given.

        ``visible``: which run folders to list; by default ``visitors.run_filter()``, i.e. on a hosted studio only
        the runs of the visitor whose event is being handled (every run on one's own machine).
        ``partial``: also a stopped Train pair's arms, as exported from their last checkpoint, labelled
        "... (partial, step N)"; a finished arm's model replaces its export. Off by default: what is preselected
        and counted is finished models; the lists a person picks from ask for them.
        """
        visible = visible or visitors.run_filter()
        found: list[RestorerEntry] = []
        for task_name, arms in shipped_restorers(self.pretrained).items():  # each task's family, in dose order
            for member, folder in arms.items():
                if _is_model_folder(folder):
                    found.append(self._entry(folder, f"shipped {task_name} {member}", "shipped",
                                             member if member in ARMS else None))
        if self.runs.is_dir():
            runs = sorted((p for p in self.runs.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
            for run in (r for r in runs if visible is None or visible(r)):
                if _is_model_folder(RunFolder(run).model):
                    found.append(self._entry(RunFolder(run).model, f"run {run.name}", "run", None))
                for arm in ARMS:
                    folder = RunFolder(run / arm)
                    if _is_model_folder(folder.model):
                        found.append(self._entry(folder.model, f"run {run.name} {arm}", "run", arm))
                    elif partial and _is_model_folder(folder.export):
                        step = _read_json(folder.export / CARD_FILE).get("steps", "?")
                        found.append(self._entry(folder.export, f"run {run.name} {arm} ({PARTIAL}, step {step})",
                                                 "run", arm))
        found = [e for e in found if e.task]
        return [e for e in found if task is None or e.task == task]

    def _entry(self, folder: Path, label: str, source: str, arm_hint: str | None) -> RestorerEntry:
        config = _read_json(folder / CONFIG_FILE)
        arm = _arm_of(folder, arm_hint)
        if arm_hint is None and arm != "?" and source != "shipped":  # a shipped arm is named by its folder
            label = f"{label} ({arm})"
        return RestorerEntry(label=label, path=folder, task=str(config.get("task", "")), arm=arm, source=source)

    def find(self, label: str, task: str | None = None,
             visible: visitors.RunFilter | None = None) -> RestorerEntry | None:
        """The restorer behind a label, among those ``visible`` (see ``restorers``): another visitor's is None;
        a stopped pair's partial arms included."""
        return next((e for e in self.restorers(task, visible, partial=True) if e.label == label), None)

    def default_pair(self, task: str, visible: visitors.RunFilter | None = None) -> tuple[str | None, str | None]:
        """Labels of the L2 and DiffLoss arms to preselect: the first of each arm for the task, the family's
        showcase arm (the report's most visibly different arm, else ``SHOWCASE_ARM``) before any other."""
        from diffloss.zoo_report import most_visible_arm

        entries = self.restorers(task, visible)
        l2 = next((e.label for e in entries if e.arm == "l2"), None)
        showcase = f"shipped {task} {most_visible_arm(self.report(), task) or SHOWCASE_ARM}"
        dl = next((e.label for e in entries if e.label == showcase),
                  next((e.label for e in entries if e.arm == "diffloss"), None))
        return l2, dl

    def example_images(self) -> list[Path]:
        """The example photos the tabs offer: the repo's examples, else the benchmark clean/val (at most 12)."""
        folders = [self.examples] if self.examples is not None else []
        folders.append(datasets_folder() / "clean" / "val")
        for folder in folders:
            if folder is not None and folder.is_dir():
                images = list_images(folder)
                if images:
                    return images[:12]
        return []

    def clean_examples(self) -> list[Path]:
        """The example photos that are clean (never the degraded ones): Compare degrades them; held out from
        training (a fresh clone's Train tab trains on ``training_examples``)."""
        return [p for p in self.example_images() if not is_degraded_example(p)]

    def training_examples(self) -> list[Path]:
        """The shipped clean photos a Train run uses when given none (``examples/train/``, crops of the benchmark's
        clean/train): never Compare's examples, so a trained pair is compared on photos it has not seen."""
        folder = self.examples / TRAINING_EXAMPLES if self.examples is not None else None
        return list_images(folder) if folder is not None and folder.is_dir() else []

    def first_clean_example(self) -> Path | None:
        """The photo every tab opens with, so a first visit needs one click to see something (None: no examples)."""
        return next(iter(self.clean_examples()), None)

    def training_folder(self) -> Path | None:
        """Clean photos for the Train tab: the benchmark clean/train beside the repo (None: the user names one).

        The examples folder is not a fallback: some of them are degraded photos, which must never be taught as
        clean; the Train tab copies the clean ones (``clean_examples``) into the run instead.
        """
        folder = datasets_folder() / "clean" / "train"
        return folder if folder.is_dir() and list_images(folder) else None

    def card(self, entry: RestorerEntry) -> dict | None:
        """A restorer's card.json (how it was trained), or None when it has none or it is unreadable."""
        return _read_json(entry.path / CARD_FILE) or None

    @property
    def report_file(self) -> Path:
        """``pretrained/report.json``, the zoo's measurements of the shipped restorers."""
        from diffloss.zoo_report import REPORT_JSON  # the writer's name for it; imported on first use

        return self.pretrained / REPORT_JSON

    def report(self) -> dict | None:
        """The zoo's measurements (``report_file``), or None; parsed once per version of the file (it is
        ~0.5 MB and every Compare reads it), shared, so read-only."""
        path = self.report_file
        return self._report.get(file_stamp(path), lambda: _read_json(path) or None)

    def calibration_images(self) -> list[Path]:
        """Clean photos to calibrate DiffLoss weights on: the benchmark clean/val beside the repo, else the clean
        examples. Validation photos, never the training folder: weights tuned on what a net trains on say little."""
        val = datasets_folder() / "clean" / "val"
        if val.is_dir():
            images = list_images(val)
            if images:
                return images
        if self.examples is not None and self.examples.is_dir():
            return [p for p in list_images(self.examples) if not is_degraded_example(p)]
        return []

    def status(self) -> str:
        """What is installed and, for what is missing, how to get it (markdown, shown at the top of the app)."""
        lines = []
        entries = self.restorers()
        shipped = [e for e in entries if e.source == "shipped"]
        runs = [e for e in entries if e.source == "run"]
        if shipped:
            tasks = sorted({e.task for e in shipped})
            lines.append(f"Shipped restorers: {len(shipped)} ({', '.join(tasks)}).")
        else:
            lines.append(
                f"**No shipped restorers yet** (nothing in `{shown_path(self.pretrained / 'restorers')}`): train a pair in the "
                "Train tab, or build the pretrained zoo (`python -m diffloss.zoo build --quick`, see the README)."
            )
        if runs:
            lines.append(f"Trained runs in `{shown_path(self.runs)}`: {len(runs)} restorer(s).")
        if self.has_shipped_prior():
            lines.append(f"Prior: `{shown_path(self.shipped_prior_path)}`.")
        else:
            lines.append(
                f"**No shipped prior** at `{shown_path(self.shipped_prior_path)}`: Inspect and the DiffLoss arm of Train need one. "
                "Type any diffusers UNet2DModel folder or hub id in the prior box, or train one with "
                "`python -m diffloss.train prior --clean FOLDER --out runs/prior` and point the box at "
                "`runs/prior/model`."
            )
        return "\n\n".join(lines)

    # ------------------------------------------------------------------------------------------ loading
    def load_restorer(self, path: str | Path) -> nets.Restorer:
        """A restorer folder, loaded once per file version; CheckpointError when it is not loadable."""
        path = Path(path)
        weights = path / MODEL_FILE
        if not weights.is_file():
            raise CheckpointError(f"no {MODEL_FILE} in {path}")
        key = (str(path.resolve()), weights.stat().st_mtime)
        with self._lock:
            model = self._restorers.get(key)
            if model is None:
                model = nets.load_restorer(path, device=self.device)
                self._restorers.put(key, model)
            return model

    def resolve_prior(self, source: str | None) -> str:
        """The folder or hub id for what the prior box says ('' or the shipped label: the shipped prior)."""
        text = (source or "").strip()
        if not text or text == SHIPPED_PRIOR:
            if not self.has_shipped_prior():
                raise PriorLoadError(
                    f"no shipped prior at {self.shipped_prior_path} yet: type a diffusers UNet2DModel folder or hub "
                    "id in the prior box, or train one (python -m diffloss.train prior ..., see the README)"
                )
            return str(self.shipped_prior_path)
        return text

    def load_prior(self, source: str | None) -> DiffusionPrior:
        """The prior for a folder / hub id / the shipped one, loaded once; PriorLoadError with the reason otherwise."""
        if hosting.is_hosted():  # the shipped prior or a hub id, never a path typed by a visitor
            try:
                hub_id = hosting.hosted_prior_source(source, SHIPPED_PRIOR)
                source = None if hub_id is None else str(hosting.fetch_hub_prior(hub_id))
            except ValueError as err:
                raise PriorLoadError(str(err)) from err
            except Exception as err:  # noqa: BLE001  (offline, no such repo, a gated one: one readable reason)
                raise PriorLoadError(f"could not fetch {hub_id!r} from the hub ({type(err).__name__})") from err
        resolved = self.resolve_prior(source)
        path = Path(resolved).expanduser()
        stamp = 0.0
        if path.is_dir():
            stamp = _prior_stamp(path)
        key = (str(path.resolve()) if path.exists() else resolved, stamp)
        with self._lock:
            prior = self._priors.get(key)
            if prior is None:
                try:
                    prior = DiffusionPrior.from_pretrained(resolved, device=self.device)
                except PriorLoadError:
                    raise
                except Exception as err:  # a hub id offline, a broken file: the UI needs one readable reason
                    raise PriorLoadError(f"could not load prior {resolved!r}: {type(err).__name__}: {err}") from err
                self._priors.put(key, prior)
            return prior

    def warm_up(self) -> threading.Thread:
        """Import what the first requests need and load the shipped prior (and diffusers) in a background thread.

        Why: importing diffusers and loading the prior take seconds on a small CPU (cold_start_parts_s in
        bench/results/studio-cpu.json); the page and Compare need neither, so the app starts serving first and
        Inspect finds the prior ready soon after. A failure is kept
        for the first Inspect call to report (it loads again and raises there with the reason).
        """
        def load() -> None:
            for module in WARM_IMPORTS:  # what the first Compare needs, imported before anyone asks
                importlib.import_module(module)
            if self.has_shipped_prior():
                try:
                    self.load_prior(None)
                except PriorLoadError:
                    pass

        thread = threading.Thread(target=load, name="prior-warm-up", daemon=True)
        thread.start()
        return thread


# Imported lazily by the library (they would slow the start-up), warmed up here so the first Compare does not wait.
WARM_IMPORTS = ("matplotlib.figure", "matplotlib.backends.backend_agg", "skimage.metrics._structural_similarity",
                "scipy.ndimage", "scipy.special")

_registry: Registry | None = None
_registry_lock = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry (created on first use with the repo's folders)."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = Registry()
        return _registry


def set_registry(registry: Registry | None) -> None:
    """Replace the process-wide registry (tests point it at tmp folders; None: back to the default)."""
    global _registry
    with _registry_lock:
        _registry = registry
