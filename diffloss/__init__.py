"""DiffLoss Studio library: a frozen diffusion prior used as a training loss for image restoration.

Modules, one job each (see README "Where things live"):
prior (frozen diffusers UNet + schedule), schedule (pure noise maths), loss (DiffLoss terms),
degrade (six tasks), data (paired folders, synthetic pairs), nets (restorers), train (one loop),
metrics / evaluate (numbers with stated conventions), checkpoint (atomic safetensors folders).
No Gradio import anywhere in this package.
"""

__version__ = "0.1.0"
