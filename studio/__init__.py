"""DiffLoss Studio's UI logic: what the Gradio app calls, as plain functions tested without a browser.

One module per tab (``compare_tab``, ``inspect_tab``, ``train_tab``) holds what its buttons do; they share
``upload`` (an image file made into a case), ``restorers`` (a dropdown's restorer or prior, loaded and run) and
``models`` (finds and caches the restorers and priors). ``app.py`` (repo root) only lays the page out and wires
events to these functions. The library (``diffloss/``) never imports Gradio; this package may.
"""
