"""DiffLoss Studio library: a frozen diffusion prior used as a training loss for image restoration.

Modules, one job each; imports flow down this list's dependencies, never in a circle, and none imports Gradio.

The loss and what it measures with
  schedule      pure noise maths (add noise, x0 from eps, DDIM steps)
  prior         the frozen diffusers UNet + scheduler, seen as a function of images (eps and h-space)
  loss          DiffLoss (fidelity + gamma * (L_nat + lambda * L_sem)) and its weighting arithmetic
  calibrate     gamma and lambda from measured gradient shares instead of guesses
  inspection    the loss opened up for one pair: views, L(t) curves, gradient maps, purification
  prior_check   is the prior any good: held-out noise error and samples

Restorers and data
  degrade       the six tasks' degradations (and what a restorer sees of them)
  data          paired folders, synthetic pairs from clean photos, crops and flips
  nets          the NAFNet-style restorer, its folder format and tiled inference
  images        images between files, PIL, numpy and tensors

Training
  train_config  the settings of a run (LoopConfig, PriorTrainConfig, RestorerTrainConfig)
  train         the loop and one train_step (also what bench times)
  run_folder    a run on disk: checkpoint format, log, same-run check, resume settings, card, export
  pair          the L2 and DiffLoss arms side by side (the Train tab and ``python -m diffloss.train pair``)
  train_cli     ``python -m diffloss.train prior|restorer|pair|resume|export``
  signals       Ctrl-C and SIGTERM as one clean stop

Measuring
  metrics       PSNR/SSIM/LPIPS with their conventions stated once
  niqe          no-reference NIQE, fitted by this project
  evaluate      evaluation reports over a source of images
  viz           pictures of what the loss sees

Around
  paths         where things live: the repository, pretrained/, runs/ (DIFFLOSS_RUNS), run-folder names, arms, tasks
  checkpoint    atomic safetensors model folders with config and card
  provenance    cards that name data by dataset-relative paths, not the machine's folders
  machine       which machine a number came from
  side_by_side  the app's speed wrapper: independent CPU work in threads (Compare's arms, L(t) halves); no maths uses it
  zoo           what pretrained/ holds and the command that rebuilds it
  zoo_report    pretrained/REPORT.md from evaluations of the zoo
"""

__version__ = "0.1.0"
