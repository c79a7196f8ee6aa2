"""Issue #27 points 1-2 in chromium at 1440x900: a Train run written after the page loaded is in Compare's arm lists
after a reload, an example keeps it, the family plot names it, the examples table fits its column, the outputs
carry no upload icons. Screenshots in artifacts/browser/train-to-compare-*.png."""

from __future__ import annotations

import json
import shutil

from tests.test_browser import (  # noqa: F401  (fresh_clone_url is a fixture: imported to be found)
    REPO, _no_error_toast, _screen, _settled, fresh_clone_url,
)

RUN = "studio-noise-20261206-000000"
SHOT = REPO / "artifacts" / "browser" / "train-to-compare-{step}.png"


def _write_train_pair(runs) -> None:
    """A pair laid out as the Train tab writes it (the shipped noise l2 and strong arms as its two arms)."""
    for arm, source in (("l2", "l2"), ("diffloss", "strong")):
        folder = runs / RUN / arm / "model"
        shutil.copytree(REPO / "pretrained" / "restorers" / "noise" / source, folder)
        card = json.loads((folder / "card.json").read_text())
        card.setdefault("data", {})["diffloss"] = arm == "diffloss"
        (folder / "card.json").write_text(json.dumps(card))


def _choose(page, box: str, label: str) -> None:
    field = page.locator(f"input[aria-label='{box}']").first
    field.click()
    field.fill("")
    field.type(label[:30])
    page.locator("ul[role=listbox] li", has_text=label).first.click()


def test_a_train_run_reaches_compare_after_a_reload_and_stays_chosen(fresh_clone_url, tmp_path):
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    with _screen(fresh_clone_url) as page:
        _write_train_pair(tmp_path / "runs")  # after the page was built and loaded
        page.reload(wait_until="load")
        page.get_by_role("tab", name="Train").wait_for(timeout=120_000)
        _settled(page)
        page.locator("input[aria-label='DiffLoss arm']").first.click()
        listed = page.locator("ul[role=listbox] li").all_inner_texts()
        assert f"run {RUN} diffloss" in listed and f"run {RUN} l2" in listed
        page.keyboard.press("Escape")
        _choose(page, "L2 arm", f"run {RUN} l2")
        _choose(page, "DiffLoss arm", f"run {RUN} diffloss")
        page.locator("table").first.locator("tbody tr").nth(2).click()  # a clean example, degraded with noise
        page.get_by_text("Not on this plot", exact=False).first.wait_for(timeout=180_000)
        _settled(page)
        _no_error_toast(page)
        assert [page.locator(f"input[aria-label='{box}']").first.input_value() for box in ("L2 arm", "DiffLoss arm")] \
            == [f"run {RUN} l2", f"run {RUN} diffloss"]
        page.screenshot(path=str(SHOT).format(step="example-keeps-the-run"))
        page.get_by_text("The task's family", exact=False).first.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOT).format(step="family-plot-names-the-run"))
        table = page.locator("table").first.evaluate("t => [t.scrollWidth, t.parentElement.clientWidth]")
        assert table[0] <= table[1], table  # the examples table fits its column: no header cut
        # Only the Photo box (the ground-truth box is hidden for a clean example) offers an upload: the outputs don't
        page.evaluate("window.scrollTo(0, 0)")
        assert page.locator("button[aria-label='Upload file']:visible").count() == 1
