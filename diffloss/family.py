"""The dose-response family: which arms a task's zoo holds, and where a zoo's data, runs and weights are.

One module that both the build (``diffloss.zoo``), the report (``diffloss.zoo_report``) and the studio read, so
an arm's name, its share of the gradient and its place in the dose order are written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from diffloss import checkpoint
from diffloss.loss import GRADIENT_NAMES
from diffloss.paths import PRETRAINED, TASK_ORDER, datasets_folder

SOTS_VAL_SCENES = ("1430", "1431", "1432", "1433", "1434")
CONTROL_ARM = "l2-reseeded"  # the L2 arm again with another seed: what "different from l2" means without a prior


@dataclass(frozen=True)
class ArmSpec:
    """One member of a task's family: how much of the gradient on the restored image the prior should carry.

    The shares are targets for the calibration (measured through the L2 base); ``weights`` fixes gamma and
    lambda instead (the released code's values). The dose: ``band`` ("all": the whole schedule, as the paper;
    "prior": the prior's own band, ``diffloss.prior_band``), ``t_max`` ending it sooner, ``t_weight`` and
    ``gradient`` as in ``DiffLossConfig`` (an arm differs from another only in its prior's weight and dose).
    """

    name: str
    nat_share: float = 0.0
    sem_share: float = 0.0
    t_max: int | None = None
    band: str = "all"
    t_weight: str = "uniform"
    gradient: str = "full"
    weights: tuple[float, float] | None = None  # (gamma, lambda), overrides the shares
    seed_offset: int = 0  # != 0: another seed (data order, crops, noise) than every other arm: a control
    shipped: bool = True  # False: trained into the run folder and measured by the report, not put in pretrained/
    optional: bool = False  # built after every task's required arms
    about: str = ""

    @property
    def uses_prior(self) -> bool:
        return self.weights is not None or self.nat_share > 0

    @property
    def prior_share(self) -> float:
        return self.nat_share + self.sem_share

    @property
    def paper_dose(self) -> bool:
        """The 2026-11 family's dose: whole schedule (or 0..t_max), uniform weights, the full gradient."""
        return (self.band, self.t_weight, self.gradient) == ("all", "uniform", "full")

    @property
    def dose_key(self) -> str:
        """The calibration key of the arm's dose: the gradient norms differ with the timesteps, their weights and
        the gradient's form, so each dose is measured once per task and shared by the arms that have it."""
        if self.band == "all":  # "all" and "0-250": the keys of the 2026-11 family's calibrations
            t_range = "all" if self.t_max is None else f"0-{self.t_max}"
        else:
            t_range = "band" if self.t_max is None else f"band-{self.t_max}"
        return "/".join([t_range] + [part for part, plain in ((self.t_weight, "uniform"), (self.gradient, "full"))
                                 if part != plain])

    def dose_words(self) -> str:
        """The dose in a few words, for labels and cards."""
        where = "the prior's band" if self.band == "prior" else "t over the whole schedule"
        if self.t_max is not None:
            where = f"t <= {self.t_max}" if self.band == "all" else f"the prior's band up to t = {self.t_max}"
        extra = [w for w, on in ((f"{self.t_weight} weights", self.t_weight != "uniform"),
                                 (f"{GRADIENT_NAMES['sds']} gradient", self.gradient == "sds")) if on]
        return ", ".join([where] + extra)


# In the order Compare's prior-weight control lists them: lightest prior first, the control beside the L2 arm.
# The prior arms take the prior's band (t where its noise prediction is right and x0 still recognisable,
# ``diffloss.prior_band``) with sigma^2 weights: the 2026-11 family drew t over the whole schedule with uniform
# weights, and its very small t (where the prior cannot tell grain from texture) rewarded grain and mosaic
# (bench/results/dose-probes-noise.md).
PRIOR_DOSE = {"band": "prior", "t_weight": "sigma2"}
FAMILY: tuple[ArmSpec, ...] = (
    ArmSpec("l2", about="fidelity only (MSE): the arm every other arm is compared with"),
    # Not shipped: pretrained/ has room for the arms a person compares (at most 130 MB), and the control is a
    # measurement, read by the report from the run folder.
    ArmSpec(CONTROL_ARM, seed_offset=1, shipped=False,
            about="fidelity only, like l2, with another seed (data order, crops, noise): how far training noise "
                  "alone moves the output, the floor under every other arm's distance from l2"),
    ArmSpec("moderate", 0.2, 0.1, **PRIOR_DOSE,
            about="the prior carries 30 % of the gradient (20 % L_nat, 10 % L_sem), t in the prior's band"),
    ArmSpec("strong", 0.5, 0.2, **PRIOR_DOSE,
            about="the prior carries 70 % of the gradient (50 % L_nat, 20 % L_sem), t in the prior's band"),
    ArmSpec("jacobian-free", 0.7, 0.0, **PRIOR_DOSE, gradient="sds",
            about="the prior carries 70 % of the gradient, all of it L_nat with the Jacobian-free "
                  "(score-distillation) gradient, t in the prior's band: half the cost of a step through the UNet"),
    ArmSpec("released", weights=(1e-3, 1e-3), optional=True,
            about="the released code's weights (gamma 1e-3, lambda 1e-3) and dose (t over the whole schedule), "
                  "with a real gradient"),
)
FAMILY_ARMS = tuple(arm.name for arm in FAMILY)
# The prior arms a person compares (shipped, built by default), in family order: the report's at-a-glance columns.
PRIOR_ARMS = tuple(a.name for a in FAMILY if a.uses_prior and a.shipped and not a.optional)
# The arm Compare sets against the L2 arm first when the report does not say which arm differs most visibly
# (studio.models.Registry.default_pair asks diffloss.zoo_report.most_visible_arm first).
SHOWCASE_ARM = "strong"
# The family joined in weight order (perception-distortion plot): the prior's share, full gradient.
DOSE_ORDER = ("l2", "moderate", "strong")
# The most telling arms land first.
BUILD_ORDER = ("l2", CONTROL_ARM, "strong", "jacobian-free", "moderate", "released")


def family_arm(name: str) -> ArmSpec:
    for arm in FAMILY:
        if arm.name == name:
            return arm
    raise ValueError(f"unknown arm {name!r}; the family is {', '.join(FAMILY_ARMS)}")


@dataclass(frozen=True)
class ZooPaths:
    """Where data is read, runs are written and finished models are installed (all options, never hard-coded)."""

    datasets: Path = datasets_folder()
    runs: Path = PRETRAINED.parent / "runs" / "zoo"
    pretrained: Path = PRETRAINED

    @property
    def clean_train(self) -> Path:
        return self.datasets / "clean" / "train"

    @property
    def clean_val(self) -> Path:
        return self.datasets / "clean" / "val"

    @property
    def sots(self) -> Path:
        return self.datasets / "haze" / "sots_indoor"

    def prior_dir(self) -> Path:
        return self.pretrained / "prior"

    def restorer_dir(self, task: str, arm: str) -> Path:
        return self.pretrained / "restorers" / task / arm


def shipped_restorers(pretrained: Path = ZooPaths().pretrained) -> dict[str, dict[str, Path]]:
    """task -> arm -> folder, for every restorer folder in ``pretrained/restorers`` that has weights.

    Arms come in family order (``FAMILY``); a folder of another name (an older zoo's ``diffloss``) follows.
    """
    found: dict[str, dict[str, Path]] = {}
    root = Path(pretrained) / "restorers"
    for task in TASK_ORDER:
        folders = sorted(p for p in (root / task).glob("*") if (p / checkpoint.MODEL_FILE).is_file())
        rank = {name: i for i, name in enumerate(FAMILY_ARMS)}
        for folder in sorted(folders, key=lambda p: (rank.get(p.name, len(rank)), p.name)):
            found.setdefault(task, {})[folder.name] = folder
    return found
