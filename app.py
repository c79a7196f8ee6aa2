"""DiffLoss Studio, the browser app: the page shell, the wiring between tabs, and the launch.

Each tab lays itself out (``studio/compare_ui.py``, ``inspect_ui.py``, ``train_ui.py``, ``degrade_ui.py``) and its
buttons' work lives beside it (``studio/compare_tab.py`` etc., tested without a browser); the library is
``diffloss/``. What the process itself needs (threads, signals, the exit) is ``studio/boot.py``.
Run ``python app.py [--host H] [--port P] [--share] [--public]``.
"""

from __future__ import annotations

from studio import boot

boot.before_imports()  # before torch and gradio are imported (see the module)

import argparse  # noqa: E402

import gradio as gr  # noqa: E402

boot.quiet_user_errors()  # a gr.Error is a visitor's mistake, said in the page: no traceback on the console

from diffloss.checkpoint import remove_interrupted_saves  # noqa: E402
from studio import blind_ui, compare_ui, degrade_ui, hosting, inspect_ui, public, train_tab, train_ui  # noqa: E402
from studio.models import get_registry  # noqa: E402
from studio.widgets import PageStart, enter_commits_sliders  # noqa: E402


def build_demo() -> gr.Blocks:
    """The page: a header with the model status, then one tab each for Compare, Inspect, Train and Degradations."""
    start = PageStart.find()
    registry = start.registry
    with gr.Blocks(title="DiffLoss Studio", **hosting.blocks_options()) as demo:
        gr.Markdown(
            "# DiffLoss Studio\nA frozen diffusion model used as a *loss* for image restoration "
            "(DiffLoss, ACCV 2024): compare restorers trained with and without it, look inside the loss, train a pair."
        )
        status = gr.Markdown(registry.status())
        enter_commits_sliders(demo)  # Enter in a slider's number box re-runs as Enter in a number box does
        with gr.Tabs():
            with gr.Tab("Compare"):
                compare = compare_ui.build(demo, start)
                blind_ui.build(compare)  # the blind test of the two arms chosen above
            with gr.Tab("Inspect"):
                inspect = inspect_ui.build(demo, start)
            with gr.Tab("Train"):
                train = train_ui.build(demo, start)
            with gr.Tab("Degradations"):
                degrade_ui.build(start)

        def show_new_run(event: gr.events.Dependency) -> gr.events.Dependency:
            """A trained or uploaded run: chosen in Compare, counted in the header, offered in Inspect."""
            event = compare.show_new_run(event).then(registry.status, None, status)
            return inspect.show_new_run(event)

        compare.refreshed.then(registry.status, None, status)
        show_new_run(compare.zip_added)
        for run in train.runs:
            train.show_new_run(show_new_run(run))
    return hosting.guard_demo(demo, public.server_roots()) if hosting.is_hosted() else demo


def allowed_paths() -> list[str]:
    """Folders the app may serve files from: examples, and runs (downloads) on one's own machine only (hosted, a
    download is served from gradio's cache to the visitor who trained it)."""
    registry = get_registry()
    paths = [] if hosting.is_hosted() else [registry.runs]
    paths += [p.parent for p in registry.example_images()[:1]]
    return [str(p) for p in paths]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="DiffLoss Studio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link")
    parser.add_argument("--public", action="store_true", help="hosted mode, as on a Space (see README)")
    args = parser.parse_args(argv)
    if args.public:
        hosting.enable_public()
    removed = remove_interrupted_saves(get_registry().runs)  # saves a kill cut short: no run is going yet
    if removed:
        print(f"Removed {len(removed)} temporary file(s) of saves interrupted in an earlier session.")
    demo = build_demo().queue()
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, allowed_paths=allowed_paths(),
                prevent_thread_lock=True, quiet=True, **hosting.launch_options())  # quiet: its hint says share=True
    print(boot.served_message(demo.local_url, bool(demo.share_url)), flush=True)
    # Serve first, then warm up (diffusers, the prior): a warm-up thread beside build_demo and launch competed with
    # them for the GIL, and the page came up later (bench/results/figures-from-comments.md).
    get_registry().warm_up()
    boot.stop_on_signals()
    demo.block_thread()  # returns after Ctrl-C, the server closed
    unsaved = train_tab.stop_for_shutdown()
    if unsaved:
        print(f"Train run: the {' and '.join(unsaved)} arm did not stop in time; its last periodic checkpoint stays.")


if __name__ == "__main__":
    main()
    boot.exit_without_teardown()
