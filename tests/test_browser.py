"""End to end in a real browser: Playwright drives Debian's chromium through a comparison and saves a screenshot.

Browsers cannot be downloaded here, so the test uses /usr/bin/chromium (installed by .ci/run); it skips with a
reason where chromium or the playwright package is missing (a user's clone).
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest

from tests.studio_helpers import launched_studio, zip_pair

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT = REPO / "artifacts" / "browser" / "compare.png"
SHIPPED_SCREENSHOT = REPO / "artifacts" / "browser" / "compare-shipped.png"
EXAMPLE = REPO / "examples" / "clean_mcmaster_05.png"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture
def studio_url(tmp_path):
    with launched_studio(tmp_path) as running:
        yield running


def _settled(page, timeout: int = 120_000) -> None:
    """Wait until no output of the page shows gradio's "processing" or "queue" status (every event has answered)."""
    page.wait_for_function(r"() => !/processing \||queue: \d/.test(document.body.innerText)", timeout=timeout)


def _open(page, url: str) -> None:
    """Load the page and let its start-up requests settle. The tabs must show; the network's quiet is waited for
    briefly but not required: on a busy 2-core CI machine one page load never reached 500 ms without a request
    within 120 s, and since Compare holds the blind test's accordion a connection stays open after every request
    has answered (measured: no request after 5 s, never "networkidle"), so a long wait only cost a minute per page;
    every test waits for the elements it needs anyway."""
    page.goto(url, wait_until="load", timeout=120_000)
    page.get_by_role("tab", name="Train").wait_for(timeout=120_000)
    try:
        page.wait_for_load_state("networkidle", timeout=5_000)
    except playwright.TimeoutError:
        pass


@contextlib.contextmanager
def _page(url: str, height: int = 1800):
    """The studio's page in headless chromium, opened and settled; the browser closes after."""
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": height})
            _open(page, url)
            yield page
        finally:
            browser.close()


@contextlib.contextmanager
def _shipped_studio(tmp_path: Path, task: str):
    """The app serving the shipped models (skips where ``task`` has no shipped restorers); yields its url."""
    from studio.models import Registry

    registry = Registry()
    if not registry.restorers(task):
        pytest.skip(f"no shipped {task} restorers in pretrained/restorers")
    with launched_studio(tmp_path, registry) as (url, _):
        yield url


def _compare_in_browser(url: str, photo: Path, screenshot: Path, expect: str) -> None:
    """Open the page, upload a photo, press Compare, wait for the metrics table (``expect``: a note that shows the
    upload was compared, not the preloaded photo), save a full-page screenshot."""
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with _page(url) as page:
        assert "DiffLoss Studio" in page.content()
        page.locator("input[type=file]").first.set_input_files(str(photo))
        page.get_by_role("button", name="Compare", exact=True).click()
        # the metrics table appears once both arms have run
        page.get_by_text("Conventions", exact=False).first.wait_for(timeout=90_000)
        assert page.get_by_text("PSNR", exact=False).first.is_visible()
        assert page.get_by_text(expect, exact=False).first.is_visible()
        page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000


def test_a_comparison_in_a_real_browser(studio_url):
    url, world = studio_url
    _compare_in_browser(url, world.photo, SCREENSHOT, "Output 64x48 px")  # the preloaded example is 64x64


def test_the_shipped_restorers_compare_a_real_photo_in_a_browser(tmp_path):
    """What a visitor sees first: the shipped pair of the first task on an example photo."""
    with _shipped_studio(tmp_path, "noise") as url:
        _compare_in_browser(url, EXAMPLE, SHIPPED_SCREENSHOT, "Output 256x256 px")


def test_inspect_then_new_weights_in_a_real_browser(studio_url):
    """Inspect a photo, then type a new gamma and press Enter: the values re-weight without pressing Inspect."""
    url, world = studio_url
    shot = REPO / "artifacts" / "browser" / "inspect.png"
    with _page(url, height=2400) as page:
        page.get_by_role("tab", name="Inspect").click()
        panel = page.get_by_role("tabpanel").filter(has=page.get_by_role("button", name="Inspect", exact=True))
        panel.locator("input[type=file]").first.set_input_files(str(world.photo))
        panel.get_by_role("button", name="Inspect", exact=True).click()
        page.get_by_text("gamma 0.05, lambda 0.1", exact=False).first.wait_for(timeout=90_000)
        gamma = panel.get_by_label("gamma (Enter: re-weight at once)")
        gamma.fill("0.5")
        gamma.press("Enter")
        page.get_by_text("gamma 0.5, lambda 0.1", exact=False).first.wait_for(timeout=30_000)
        assert page.get_by_text("share of the gradient", exact=False).first.is_visible()
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_a_first_visit_needs_one_click_per_tab(studio_url):
    """Every tab opens with a photo, so Compare needs only its button; a click on an example runs Inspect at once."""
    url, world = studio_url
    with _page(url) as page:
        uploads = page.locator("input[type=file]").count()
        page.get_by_role("button", name="Compare", exact=True).click()  # no upload: the photo is preloaded
        page.get_by_text("Conventions", exact=False).first.wait_for(timeout=90_000)
        assert page.get_by_text("Output 64x64 px", exact=False).first.is_visible()  # the world's 64 px example
        error_title = page.get_by_text("Error against ground truth", exact=False).first
        error_title.wait_for(state="visible", timeout=30_000)  # degraded for the visitor: the truth is known
        assert page.locator("input[type=file]").count() == uploads  # the error map shows, and is no upload box
        page.get_by_label("it is already degraded").check()
        page.get_by_role("button", name="Compare", exact=True).click()
        page.get_by_text("No ground truth (already degraded)", exact=False).first.wait_for(timeout=90_000)
        error_title.wait_for(state="hidden", timeout=30_000)  # no empty box left where the error map was

        page.get_by_role("tab", name="Inspect").click()
        panel = page.get_by_role("tabpanel").filter(has=page.get_by_role("button", name="Inspect", exact=True))
        assert not panel.get_by_text("L_nat =", exact=False).first.is_visible()
        panel.locator(".gallery-item").nth(1).click()  # an example, and nothing else pressed
        page.get_by_text("L_nat =", exact=False).first.wait_for(timeout=90_000)


def test_a_click_on_an_example_of_another_task_compares_that_tasks_pair(tmp_path):
    """The haze example switches the task and runs Compare in one click, with the haze pair (not the noise pair the
    page opened with: the task box refreshes the arms only on a person's change, so the click's chain sets them)."""
    with _shipped_studio(tmp_path, "haze") as url, _page(url) as page:
        page.locator("tbody tr").filter(has_text="haze").first.click()
        page.get_by_text("haze: Remove haze", exact=False).first.wait_for(timeout=90_000)
        assert page.get_by_text("A real pair", exact=False).first.is_visible()  # with its ground truth
        assert page.get_by_label("Ground truth").first.is_visible()


def test_an_uploaded_zip_is_chosen_in_compare(studio_url, tmp_path):
    """Upload the Train tab's kind of zip in Compare: both arm boxes then name the new run."""
    url, world = studio_url
    archive = zip_pair(world, tmp_path / "pair.zip")
    with _page(url) as page:
        page.get_by_text("Add restorers: upload a zip", exact=False).click()
        page.locator("input[type=file][accept*='.zip']").set_input_files(str(archive))
        page.get_by_text("now chosen above", exact=False).wait_for(timeout=60_000)
        page.wait_for_function("() => [...document.querySelectorAll('input')].some("
                               "i => i.value.startsWith('run upload-pair-') && i.value.endsWith(' diffloss'))",
                               timeout=30_000)
        l2_box, dl_box = page.get_by_label("L2 arm"), page.get_by_label("DiffLoss arm")
        assert l2_box.input_value().startswith("run upload-pair-") and l2_box.input_value().endswith(" l2")
        assert dl_box.input_value().endswith(" diffloss")


def test_a_real_pair_example_in_inspect_sets_its_task_and_restorer_then_runs(tmp_path):
    """Inspect's "Real pairs" examples: one click sets the photo, its task (haze) and its ground truth, picks a haze
    restorer before the run (the task box refreshes it only on a person's change), and inspects the real pair."""
    with _shipped_studio(tmp_path, "haze") as url, _page(url, height=2400) as page:
        page.get_by_role("tab", name="Inspect").click()
        panel = page.get_by_role("tabpanel").filter(has=page.get_by_role("button", name="Inspect", exact=True))
        panel.locator("tbody tr").filter(has_text="haze").first.click()
        page.get_by_text("A real pair: the photo is taken as it is", exact=False).first.wait_for(timeout=90_000)
        assert panel.get_by_label("Restorer (for 'restored')").input_value().startswith("shipped haze")


def test_a_run_stopped_after_start_up_is_resumed_from_the_train_tab(studio_url):
    """A run stops while the app serves (Stop, a closed tab): the next page lists it, and Resume finishes it."""
    from studio import train_tab
    from studio.train_settings import TrainSettings

    url, world = studio_url
    run = train_tab.train_pair(TrainSettings("noise", 6, 1, 32, 1e-3, 0.05, 0.1, 0, 999, 0, "", str(world.clean),
                                             width=8, name="paused"), registry=world.registry)
    next(run)
    next(run)
    run.close()  # the browser went away after one step of each arm
    shot = REPO / "artifacts" / "browser" / "train-resume.png"
    with _page(url) as page:
        page.get_by_role("tab", name="Train").click()
        runs = page.get_by_label("Stopped runs", exact=False)
        runs.click()
        page.get_by_role("option", name="paused (l2 1/6, diffloss 1/6)").click()
        page.get_by_role("button", name="Resume", exact=True).click()
        page.get_by_text("Done", exact=True).first.wait_for(timeout=120_000)
        assert page.get_by_text("l2: resumed at step 1", exact=False).first.is_visible()
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
    assert (world.registry.runs / "paused" / "diffloss" / "model").is_dir()


def test_the_released_weights_button_shows_what_they_do_in_inspect(studio_url):
    """One click sets the released code's weights and re-weights the inspected pair: the values and shares update."""
    url, world = studio_url
    with _page(url, height=2400) as page:
        page.get_by_role("tab", name="Inspect").click()
        panel = page.get_by_role("tabpanel").filter(has=page.get_by_role("button", name="Inspect", exact=True))
        panel.get_by_role("button", name="Inspect", exact=True).click()
        page.get_by_text("gamma 0.05, lambda 0.1", exact=False).first.wait_for(timeout=90_000)
        panel.get_by_role("button", name="Released code's weights", exact=False).click()
        page.get_by_text("gamma 0.001, lambda 0.001", exact=False).first.wait_for(timeout=30_000)
        assert panel.get_by_label("gamma (Enter: re-weight at once)").input_value() == "0.001"


FAMILY_SCREENSHOT = REPO / "artifacts" / "browser" / "compare-family.png"


def _difference_note(page) -> str:
    """The caption under the amplified difference (its scale and the largest difference of the two outputs)."""
    return page.get_by_text("largest difference", exact=False).first.inner_text()


def test_compare_steps_the_prior_weight_through_the_family_in_a_browser(tmp_path):
    """The family view on a shipped noise example, where the report measures a prior arm further from the L2 arm
    than training noise moves it (REPORT.md): one step down the dose with the prior-weight control, then up to
    that arm, its difference from the L2 arm amplified, the family's perception-distortion plot with both ringed."""
    from diffloss.family import PRIOR_ARMS, SHOWCASE_ARM, shipped_restorers
    from diffloss.zoo_report import most_visible_arm
    from studio.family_view import weight_label
    from studio.models import Registry

    task = "noise"
    showcase = most_visible_arm(Registry().report(), task) or SHOWCASE_ARM
    step = next(a for a in PRIOR_ARMS if a != showcase)  # another prior arm first, then the most visible one
    arms = shipped_restorers().get(task, {})
    if not {"l2", step, showcase} <= set(arms):
        pytest.skip(f"the {task} family (l2, {step}, {showcase}) is not shipped in pretrained/restorers yet")
    FAMILY_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    with _shipped_studio(tmp_path, task) as url, _page(url, height=2200) as page:
        page.locator("tr").filter(has_text=task).first.click()  # a clean example, degraded with noise
        # the prior-weight control steps through the task's family (its choices' values name the arms)
        page.locator(f"input[type=radio][value='shipped {task} {step}']").wait_for(state="attached",
                                                                                   timeout=90_000)
        _settled(page)
        shown_first = _difference_note(page)  # the example's run: the default pair
        page.get_by_text(weight_label(step), exact=False).first.click()  # another arm of the dose
        # that arm's caption, not the example's (a 500 ms pause raced a slower Compare run)
        page.wait_for_function("(old) => [...document.querySelectorAll('p, span, div')].some(e => "
                               "e.childElementCount === 0 && e.innerText.includes('largest difference') && "
                               "e.innerText !== old)", arg=shown_first, timeout=120_000)
        _settled(page)
        before = _difference_note(page)
        page.get_by_text(weight_label(showcase), exact=False).first.click()  # and up to the most visible arm
        # the re-run's pictures, not the previous arm's: its difference caption replaces the other arm's
        page.wait_for_function("(old) => [...document.querySelectorAll('p, span, div')].some(e => "
                               "e.childElementCount === 0 && e.innerText.includes('largest difference') && "
                               "e.innerText !== old)", arg=before, timeout=120_000)
        _settled(page)
        page.screenshot(path=str(FAMILY_SCREENSHOT), full_page=True)
        _no_error_toast(page)
        shown = page.evaluate("() => [...document.querySelectorAll('input')].map(i => i.value)")
        assert f"shipped {task} l2" in shown and f"shipped {task} {showcase}" in shown  # the two arms on show
        note = _difference_note(page)
        assert "x10" in note and note != before
        assert page.get_by_text("the arms on show ringed", exact=False).first.is_visible()
    assert FAMILY_SCREENSHOT.stat().st_size > 10_000


# ------------------------------------------------------------------------------------ the first click, per tab
FIRST_CLICK_SHOT = REPO / "artifacts" / "browser" / "first-click-{tab}.png"
SCREEN = {"width": 1440, "height": 900}  # a laptop: each tab's main result must show without scrolling


@pytest.fixture
def fresh_clone_url(tmp_path, monkeypatch):
    """The app as a fresh clone serves it: the shipped prior, restorers and examples, no ``../shared`` beside it
    (DIFFLOSS_DATASETS points at an empty folder), runs written to a tmp folder."""
    from studio.models import Registry

    (tmp_path / "no-datasets").mkdir()
    monkeypatch.setenv("DIFFLOSS_DATASETS", str(tmp_path / "no-datasets"))
    registry = Registry(runs=tmp_path / "runs")
    if not registry.has_shipped_prior() or not registry.restorers("noise"):
        pytest.skip("no shipped prior or noise restorers in pretrained/ (this checkout has not got the zoo)")
    assert registry.training_folder() is None
    with launched_studio(tmp_path, registry) as (url, _):
        yield url


@contextlib.contextmanager
def _screen(url: str):
    """The page at 1440x900, on the first tab, settled."""
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport=SCREEN)
            _open(page, url)
            yield page
        finally:
            browser.close()


def _no_error_toast(page) -> None:
    errors = page.locator(".toast-body.error")
    assert errors.count() == 0, errors.first.inner_text()


def _in_view(locator) -> bool:
    """The element's top edge lies inside the 1440x900 window, without scrolling."""
    box = locator.bounding_box()
    return box is not None and 0 <= box["y"] < SCREEN["height"]


def test_first_click_inspect(fresh_clone_url):
    """Inspect with its defaults (the preloaded example, the shipped restorer and prior): one click, and the terms
    and the first pictures show in the window, where the placeholders were."""
    shot = Path(str(FIRST_CLICK_SHOT).format(tab="inspect"))
    with _screen(fresh_clone_url) as page:
        page.get_by_role("tab", name="Inspect").click()
        panel = page.get_by_role("tabpanel").filter(has=page.get_by_role("button", name="Inspect", exact=True))
        assert panel.get_by_text("Press Inspect", exact=False).first.is_visible()  # no empty frame before it
        button = panel.get_by_role("button", name="Inspect", exact=True)
        assert _in_view(button)
        button.click()
        values = page.get_by_text("L_nat = ", exact=False).first
        values.wait_for(timeout=180_000)
        _no_error_toast(page)
        assert page.get_by_text("both images against the ground truth", exact=False).first.is_visible()
        assert _in_view(values) and _in_view(panel.get_by_text("x_t: the noised images", exact=False).first)
        assert panel.get_by_text("One-step x0 estimates", exact=False).first.is_visible()
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot))  # the window, not the whole page: what a 1440x900 screen shows
        page.screenshot(path=str(shot.with_name("first-click-inspect-full.png")), full_page=True)
        # Enter in t's box re-runs, as Enter in gamma does; a high t says its pictures are noise by design
        t_box = panel.locator("input[type=number][aria-label^='number input for timestep t']")
        t_box.fill("900")
        t_box.press("Enter")
        page.get_by_text("t = 900 of 999", exact=False).first.wait_for(timeout=120_000)
        assert page.get_by_text("mostly noise or blur by design", exact=False).first.is_visible()
        _no_error_toast(page)
    assert shot.stat().st_size > 10_000


def test_first_click_train(fresh_clone_url):
    """Train with its defaults: no folder, no upload, so both arms train on the shipped clean examples (the status
    says so) and the live curves show in the window; Stop then leaves the arms to compare, labelled partial."""
    import re

    shot = Path(str(FIRST_CLICK_SHOT).format(tab="train"))
    with _screen(fresh_clone_url) as page:
        page.get_by_role("tab", name="Train").click()
        panel = page.get_by_role("tabpanel").filter(has=page.get_by_role("button", name="Train both arms"))
        assert panel.get_by_text("clean photos shipped in", exact=False).first.is_visible()
        button = panel.get_by_role("button", name="Train both arms")
        assert _in_view(button)
        button.click()
        progress = page.get_by_text(re.compile(r"diffloss: .*step [1-9]\d*/100")).first
        progress.wait_for(timeout=300_000)  # the first logged step of both arms
        _no_error_toast(page)
        assert page.get_by_text("no photos given: the arms train on the 8 clean photos",
                                exact=False).first.is_visible()
        assert _in_view(panel.get_by_text("Loss terms (live)", exact=False).first)
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot))
        panel.get_by_role("button", name="Stop", exact=True).click()
        page.get_by_text("can be compared", exact=False).first.wait_for(timeout=120_000)
        assert page.get_by_text("Stopped", exact=True).first.is_visible()
        _no_error_toast(page)
        page.screenshot(path=str(shot.with_name("first-click-train-stopped.png")))
    assert shot.stat().st_size > 10_000


def test_first_click_compare(fresh_clone_url):
    """Compare with its defaults (the preloaded example, the task's L2 and showcase arms): placeholders before, one
    click, the three pictures and the metrics in the window, the family's difference and plot below."""
    shot = Path(str(FIRST_CLICK_SHOT).format(tab="compare"))
    with _screen(fresh_clone_url) as page:
        assert page.get_by_text("Prior weight", exact=False).first.is_visible()
        button = page.get_by_role("button", name="Compare", exact=True)
        assert _in_view(button)
        button.click()
        page.get_by_text("DiffLoss arm minus L2 arm", exact=False).first.wait_for(timeout=120_000)
        _no_error_toast(page)
        assert _in_view(page.get_by_text("L2 arm", exact=True).first)
        assert page.get_by_text("Conventions", exact=False).first.is_visible()
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot))
        page.screenshot(path=str(shot.with_name("first-click-compare-full.png")), full_page=True)
    assert shot.stat().st_size > 10_000


BLIND_SHOT = REPO / "artifacts" / "browser" / "compare-blind-{when}.png"


def test_compare_blind_test_hides_the_names_until_the_vote(fresh_clone_url):
    """Compare's blind test on the shipped arms: A and B without names, then a vote reveals them with the
    metrics and the running tally (the vote is saved where the tally command reads it: the runs folder)."""
    with _screen(fresh_clone_url) as page:
        page.get_by_text("Blind test: which output looks better?", exact=False).click()
        page.get_by_role("button", name="Next photo", exact=True).click()
        prompt = page.get_by_text("Which looks better, A or B?", exact=False).first
        prompt.wait_for(timeout=120_000)
        _settled(page)
        _no_error_toast(page)
        accordion = page.locator("button", has_text="Blind test").first
        to_top = "(y) => window.scrollBy(0, y)"  # the blind test at the window's top, as a visitor scrolls to it
        page.evaluate(to_top, accordion.bounding_box()["y"] - 8)
        assert not page.get_by_text("A was", exact=False).first.is_visible()  # no names before the vote
        BLIND_SHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(BLIND_SHOT).format(when="before"))
        page.get_by_role("button", name="A looks better", exact=True).click()
        page.get_by_text("Running tally", exact=False).first.wait_for(timeout=60_000)
        _no_error_toast(page)
        assert page.get_by_text("A was `shipped noise", exact=False).first.is_visible() or \
            page.get_by_text("A was shipped noise", exact=False).first.is_visible()
        assert page.get_by_text("PSNR (higher is better)", exact=False).first.is_visible()
        page.evaluate(to_top, accordion.bounding_box()["y"] - 8)
        page.screenshot(path=str(BLIND_SHOT).format(when="after"))
        page.screenshot(path=str(BLIND_SHOT).format(when="after-full"), full_page=True)
    assert Path(str(BLIND_SHOT).format(when="after")).stat().st_size > 10_000


TRAIN_GAP_SHOT = REPO / "artifacts" / "browser" / "train-gap-{when}.png"


def test_train_shows_live_how_far_a_family_presets_arms_move_apart(fresh_clone_url):
    """Train with the shipped family's `jacobian-free` preset (a short run of it): the form takes the arm's recipe, its
    gradient form included, and while both arms train the gap between their outputs on a photo they do not train on
    grows, drawn live."""
    import re

    with _screen(fresh_clone_url) as page:
        page.get_by_role("tab", name="Train").click()
        panel = page.get_by_role("tabpanel").filter(has=page.get_by_role("button", name="Train both arms"))
        panel.get_by_label("Preset: the recipe of a shipped family arm", exact=False).click()
        page.get_by_role("option", name=re.compile(r"^jacobian-free")).click()
        page.get_by_text(re.compile(r"Set from shipped noise jacobian-free.s card")).first.wait_for(timeout=30_000)
        assert float(panel.get_by_label("gamma", exact=True).input_value()) > 0.5
        steps = panel.get_by_label("Steps (at most", exact=False)
        steps.fill("12")  # a short run of the recipe: the test's time, not the arm's
        panel.get_by_role("button", name="More settings", exact=False).click()
        assert panel.get_by_label("Jacobian-free (score distillation)").is_checked()  # the preset's gradient form
        panel.get_by_label("Prior sub-crop px", exact=False).fill("32")
        panel.get_by_role("button", name="Train both arms").click()
        page.get_by_text("dB apart", exact=False).first.wait_for(timeout=300_000)
        _no_error_toast(page)
        gap = page.get_by_text("How far the two arms have moved apart (live)", exact=False).first
        page.evaluate("(y) => window.scrollBy(0, y)", gap.bounding_box()["y"] - 300)
        TRAIN_GAP_SHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(TRAIN_GAP_SHOT).format(when="during"))
        page.get_by_text("Done", exact=True).first.wait_for(timeout=600_000)
        _settled(page)
        assert page.get_by_text(re.compile(r"Step 12, on \S+\.png")).first.is_visible()
        page.evaluate("(y) => window.scrollBy(0, y)", gap.bounding_box()["y"] - 300)
        page.screenshot(path=str(TRAIN_GAP_SHOT).format(when="after"))
        page.screenshot(path=str(TRAIN_GAP_SHOT).format(when="after-full"), full_page=True)
    assert Path(str(TRAIN_GAP_SHOT).format(when="after")).stat().st_size > 10_000
