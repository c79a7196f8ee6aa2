"""What the app says about a restorer: how it was trained (its card) and what it measured (the zoo's report).

Why: every weight ships with a card (command, data, steps, time, device), and the shipped pairs with metrics
measured by ``python -m diffloss.zoo report``. A researcher comparing two arms in the browser should see, without
opening JSON files, that they share their start, data and steps and differ only in the loss, and what that
difference measured. Pure functions of the card and report dicts; the registry reads the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffloss.paths import datasets_folder, shown_path

METRICS = (("psnr", "PSNR", 2), ("ssim", "SSIM", 4), ("niqe", "NIQE", 2), ("lpips", "LPIPS", 3))


def _name(path: Any, repo: Path | None) -> str:
    """A card's path as the reader knows it (``diffloss.paths.shown_path``): relative to ``repo`` or to the
    datasets folder, else by its name (the machine that trained a weight is not the reader's)."""
    roots = {datasets_folder(): "datasets/", **({repo: ""} if repo is not None else {})}
    return shown_path(str(path), roots) if path else "?"


def training_lines(card: dict[str, Any] | None, repo: Path | None = None) -> list[str]:
    """Markdown bullet lines from a restorer card: steps and time, start, data, loss, calibration, command."""
    if not card:
        return ["- no card.json: how it was trained is unknown"]
    data = card.get("data") if isinstance(card.get("data"), dict) else {}
    loss = data.get("loss") if isinstance(data.get("loss"), dict) else {}
    lines = []
    minutes = f", {card['wall_time_s'] / 60:.1f} min" if isinstance(card.get("wall_time_s"), (int, float)) else ""
    lines.append(f"- {card.get('steps', '?')} steps, batch {card.get('batch_size', '?')}{minutes} on "
                 f"{card.get('device', '?')}; finished {card.get('finished', '?')}; {card.get('weights', 'weights')}")
    init = data.get("init")
    base = card.get("base") if isinstance(card.get("base"), dict) else None
    if init:
        extra = (f" (an L2 base: {base.get('steps', '?')} steps, {base.get('loss', '?')})" if base else "")
        lines.append(f"- started from `{_name(init, repo)}`{extra}")
    else:
        lines.append("- started from a fresh restorer")
    clean = data.get("clean") or []
    photos = f"{data['clean_images']} clean photos" if data.get("clean_images") else "clean photos"
    if clean:
        lines.append(f"- data: {photos} from {', '.join(f'`{_name(c, repo)}`' for c in clean)}, degraded on the fly")
    fidelity = loss.get("fidelity", "?")
    if data.get("diffloss") and loss:
        lo, hi = data.get("t_range") or (loss.get("t_min") or 0, loss.get("t_max"))
        lines.append(f"- loss: {fidelity} + gamma {loss.get('gamma', 0):.4g} * (L_nat + lambda {loss.get('lam', 0):.4g}"
                     f" * L_sem), t in [{lo}, {'T-1' if hi is None else hi}]")
    else:
        lines.append(f"- loss: {fidelity} only (the L2 arm)")
    calibration = card.get("calibration")
    arm = card.get("arm") if isinstance(card.get("arm"), dict) else None
    if isinstance(calibration, dict) and data.get("diffloss") and arm and arm.get("nat_share"):
        lines.append(f"- weights solved so that L_nat carries {arm['nat_share']:.0%} and L_sem "
                     f"{arm.get('sem_share', 0):.0%} of the gradient, measured through the L2 base on "
                     f"{calibration.get('images', '?')} training photos")
    elif isinstance(calibration, dict) and data.get("diffloss") and "nat_share" in calibration:
        lines.append(f"- weights calibrated so that L_nat carries {calibration.get('nat_share', 0):.0%} and L_sem "
                     f"{calibration.get('sem_share', 0):.0%} of the gradient on {calibration.get('images', '?')} "
                     "validation photos")
    if card.get("storage"):
        lines.append(f"- stored as {card['storage']}")
    if card.get("command"):
        lines.append(f"- command: `{card['command']}`")
    return lines


def measured_rows(report: dict[str, Any] | None, task: str, folder: Path) -> list[tuple[str, int, dict]]:
    """(source, images, mean metrics) for the restorer at ``folder`` in a zoo report, one per evaluated source."""
    if not report:
        return []
    entry = (report.get("tasks") or {}).get(task) or {}
    rows = []
    for source in entry.get("sources") or []:
        for restorer in (source.get("report") or {}).get("restorers") or []:
            path = restorer.get("path")
            if path and Path(path).resolve() == Path(folder).resolve():
                images = restorer.get("images")
                count = len(images) if isinstance(images, list) else int(images or 0)  # per-image rows, or a count
                rows.append((str(source.get("source", "?")), count, restorer.get("mean") or {}))
    return rows


def measured_lines(rows: list[tuple[str, int, dict]]) -> list[str]:
    """Nested markdown bullet lines of measured means; metrics that were not measured are left out."""
    lines = []
    for source, images, mean in rows:
        values = [f"{label} {mean[key]:.{digits}f}" for key, label, digits in METRICS
                  if isinstance(mean.get(key), (int, float))]
        if values:
            lines.append(f"  - {source}, {images} images: {', '.join(values)}")
    return lines
