"""What each tab shows, in words for a learner: the "what am I looking at" line at the top of each tab and the
one-line caption under each of Inspect's pictures. Text only (markdown), kept apart from the layouts so a teacher
can reword it in one place.
"""

from __future__ import annotations

PAPER_URL = "https://arxiv.org/abs/2406.19030"
PAPER = f"[DiffLoss paper, arXiv 2406.19030]({PAPER_URL})"

COMPARE = (
    "**What am I looking at?** Two restorers of the same kind, trained on the same photos from the same start: the "
    "*L2 arm* with a fidelity loss only, the *DiffLoss arm* with fidelity + gamma (L_nat + lambda L_sem) computed "
    "through a frozen diffusion model (the *prior*). Compare restores one photo with both, side by side with their "
    "errors and metrics; *Evaluate both* scores them on many. The task's *family* is a dose-response: one restorer "
    "fine-tuned at several doses of the prior. *PSNR*/*SSIM*: closeness to the ground truth (higher is closer); "
    "*HaarPSI* (higher) and *MS-GMSDc* (lower): perceptual closeness to it; *NIQE*: how natural the statistics look "
    "without one (lower), which in a blind A/B agreed with the judges no better than a coin toss. Trust your eyes: "
    f"*Blind test* shows the two outputs unnamed. From the {PAPER}."
)

INSPECT = (
    "**What am I looking at?** What the frozen diffusion prior sees of a pair, the *restored* (or degraded) image "
    "and its *ground truth*: both are noised to step t with the same noise, and the prior's noise predictions "
    "(L_nat) and mid-block features (*h-space*: the UNet's innermost features, what the image shows; L_sem) are "
    "compared. Small t: little noise, fine detail counts; large "
    f"t: mostly noise, only coarse structure. From the {PAPER}."
)

TRAIN = (
    "**What am I looking at?** Two restorers trained side by side from the same weights, seed and batches: the "
    "*L2 arm* (fidelity only) and the *DiffLoss arm* (fidelity + gamma (L_nat + lambda L_sem) through the frozen "
    "prior). Only the loss differs, so any difference in the curves or in Compare afterwards is the prior's doing. "
    "*Share of the gradient*: how much of the push on the restored image comes from the prior's terms. Closing "
    "this browser tab stops a run: both arms save a checkpoint, Compare lists them as partial, Resume goes on. "
    f"From the {PAPER}."
)

DOSE = (
    "The paper weighs every t alike, so L_nat's gradient grows as t falls, where a small prior knows least. "
    "*Weight of each t*: sigma^2 cancels most of that growth (score-distillation practice). *Jacobian-free*: the "
    "gap of the two noise predictions is passed straight to the image, no backward through the UNet (half the "
    "cost). *Normalise*: every sample pushes equally hard. *Cap*: the prior can never outvote the data by more "
    "than this factor. The L(t) plot below shows the weight each t gets."
)

INSPECT_CAPTIONS = {
    "x_t": "both images with the same noise added at step t, what the prior is given (mostly noise at large t, by "
           "design).",
    "eps": "the prior's guess of that noise per image (grey = 0, one scale) and their difference (own scale): "
           "L_nat is its mean square.",
    "x0": "the clean image the prior reads out of x_t in one step (a blur or colour noise at large t, by design).",
    "h_pca": "the prior's mid-block features, three main directions as colours shared by both: L_sem compares "
             "these maps.",
    "h_error": "where L_sem comes from, (h - h_GT)^2, both images on ONE colour scale (the bar): dark = small.",
    "gradient": "|gradient| of gamma (L_nat + lambda L_sem) on each image, ONE colour scale (the bar): where "
                "training would change it.",
}

INSPECT_TITLES = {
    "x_t": "x_t: the noised images",
    "eps": "Predicted noise and its difference",
    "x0": "One-step x0 estimates",
    "h_pca": "h-space maps (mid-block features)",
    "h_error": "h-space error",
    "gradient": "Where the prior pushes",
}
