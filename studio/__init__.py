"""DiffLoss Studio's UI logic: what the Gradio app calls, as plain functions tested without a browser.

``models`` finds and caches the restorers and priors; ``handlers`` holds the Compare / Inspect / Train work;
``app.py`` (repo root) only lays the page out and wires events to these functions. The library (``diffloss/``)
never imports Gradio; this package may.
"""
