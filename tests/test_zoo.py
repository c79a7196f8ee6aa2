"""The zoo build: every step runs, installs with a card, skips when done; the report compares both arms."""

import json

import torch

from diffloss import zoo
from diffloss.images import save_image
from diffloss.nets import load_restorer
from diffloss.prior import DiffusionPrior
from diffloss.zoo_report import write_report

TINY = zoo.Recipe(
    "tiny",
    zoo.PriorRecipe(preset="tiny", crop=16, batch_size=2, steps=2),
    zoo.RestorerRecipe(crop=32, batch_size=2, base_steps=2, arm_steps=2, calibration_images=1),
    tasks=("noise",),
)


def _photos(folder, n, size, seed):
    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        img = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 6, generator=g), size=size, mode="bilinear")[0]
        save_image(img, folder / f"p{i}.png")


def test_tiny_build_installs_both_arms_and_resumes_by_skipping(tmp_path):
    paths = zoo.ZooPaths(datasets=tmp_path / "data", runs=tmp_path / "runs", pretrained=tmp_path / "pretrained")
    _photos(paths.clean_train, 3, (48, 64), 0)
    _photos(paths.clean_val, 2, (64, 64), 1)
    log = []
    zoo.build(TINY, paths, device="cpu", log=log.append)
    prior = DiffusionPrior.from_pretrained(paths.prior_dir())
    card = json.loads((paths.prior_dir() / "card.json").read_text())
    assert set(card["validation"]["eps_mse"]) == {"50", "200", "500"} or prior.num_timesteps < 501
    assert (paths.prior_dir() / "samples.png").is_file()
    for arm in zoo.ARMS:
        model = load_restorer(paths.restorer_dir("noise", arm))
        arm_card = json.loads((paths.restorer_dir("noise", arm) / "card.json").read_text())
        assert arm_card["storage"] == "float16" and arm_card["steps"] == 2
        assert arm_card["data"]["init"].endswith("noise/base/model")
        assert arm_card["data"]["diffloss"] is (arm == "diffloss")
        assert arm_card["base"]["steps"] == TINY.restorer.base_steps and arm_card["base"]["wall_time_s"] > 0
        assert model.config.task == "noise"
    calibration = json.loads((paths.runs / "tiny" / "noise" / "calibration.json").read_text())
    assert calibration["gamma"] > 0 and calibration["lam"] > 0
    assert zoo.shipped_restorers(paths.pretrained) == {"noise": {a: paths.restorer_dir("noise", a) for a in zoo.ARMS}}

    log.clear()
    zoo.build(TINY, paths, device="cpu", log=log.append)
    assert sum("already built" in line for line in log) == 5  # prior, base, calibrate, two arms

    md = write_report(paths)
    text = md.read_text()
    assert "## noise" in text and "| diffloss |" in text and "| l2 |" in text and "| input |" in text
    assert "## haze" in text and "Not shipped yet" in text
    data = json.loads((paths.pretrained / "report.json").read_text())
    wins = data["tasks"]["noise"]["sources"][0]["wins"]["psnr"]
    assert wins[1] == 2 and 0 <= wins[0] <= 2
    # fp16 storage measured against the fp32 run it came from: agreement far above visible differences
    fp16 = data["tasks"]["noise"]["fp16_vs_fp32_psnr_db"]
    assert set(fp16) == {"l2", "diffloss"} and all(v is not None and v > 45 for v in fp16.values())
    assert "fp16 storage vs the fp32 weights" in text
