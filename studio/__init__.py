"""DiffLoss Studio's UI logic: what the Gradio app calls, as plain functions tested without a browser.

Each tab has two modules: ``*_tab`` (``compare_tab``, ``inspect_tab``, ``train_tab``, ``degrade_tab``) holds what
its buttons do, ``*_ui`` lays the tab out and wires its own events, from pieces in ``widgets``. They share
``upload`` (an image file made into a case), ``restorers`` (a dropdown's restorer or prior, loaded and run) and
``models`` (finds and caches the restorers and priors). ``boot`` sets up the process. ``app.py`` (repo root) is the
page shell: header, tabs, the wiring between tabs, the launch. The library (``diffloss/``) never imports Gradio;
this package may.
"""
