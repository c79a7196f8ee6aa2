"""The restorer: small enough, any image size, starts as the identity, trains everywhere, saves, tiles seamlessly."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from diffloss.checkpoint import CONFIG_FILE, MODEL_FILE, CheckpointError, save_model_folder
from diffloss.nets import (
    Restorer,
    RestorerConfig,
    count_parameters,
    load_restorer,
    pad_to_multiple,
    restore,
    save_restorer,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """These tests check behaviour, not speed: one thread keeps them fast on a shared machine, where two
    spin-waiting OpenMP threads next to a busy process run ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _trained_looking(config: RestorerConfig, seed: int = 0) -> Restorer:
    """A restorer that is not the identity: every weight nudged, so comparisons cannot pass trivially."""
    torch.manual_seed(seed)
    model = Restorer(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


@pytest.mark.parametrize("in_channels", [3, 4])
def test_default_restorer_has_under_two_million_parameters(in_channels: int) -> None:
    n = count_parameters(Restorer(RestorerConfig(in_channels=in_channels)))
    assert 100_000 < n < 2_000_000


@pytest.mark.parametrize("task", ["lowlight", "rain", "haze", "noise", "sr4", "inpaint"])
def test_every_tasks_new_restorer_has_its_layout_and_under_two_million_parameters(task: str) -> None:
    from diffloss.nets import TASK_LAYOUTS
    from diffloss.train_config import new_restorer_config

    config = new_restorer_config(task)
    layout = TASK_LAYOUTS.get(task, {})
    default = RestorerConfig()
    assert config.task == task and config.in_channels == (4 if task == "inpaint" else 3)
    for field in ("enc_blocks", "dec_blocks", "middle_blocks"):
        assert getattr(config, field) == layout.get(field, getattr(default, field))
    assert 100_000 < count_parameters(Restorer(config)) < 2_000_000
    assert new_restorer_config(task, width=16).width == 16  # the layout keeps the width option


def test_config_survives_json_with_tuples() -> None:
    config = RestorerConfig(task="inpaint", in_channels=4, width=8, enc_blocks=(1, 2), dec_blocks=(1, 1))
    back = RestorerConfig.from_dict(json.loads(json.dumps({"kind": "restorer", **config.to_dict()})))
    assert back == config
    assert isinstance(back.enc_blocks, tuple) and isinstance(back.dec_blocks, tuple)


def test_config_rejects_levels_that_do_not_pair() -> None:
    with pytest.raises(ValueError, match="one entry per level"):
        RestorerConfig(enc_blocks=(1, 1, 1), dec_blocks=(1, 1))


@pytest.mark.parametrize("size", [(1, 1), (17, 23), (37, 53), (64, 48)])
@pytest.mark.parametrize("in_channels", [3, 4])
def test_output_has_input_size_for_any_shape(size: tuple[int, int], in_channels: int) -> None:
    model = _trained_looking(RestorerConfig(in_channels=in_channels))
    x = torch.rand(2, in_channels, *size)
    assert model(x).shape == (2, 3, *size)  # with autograd
    with torch.inference_mode():
        out = model(x)
    assert out.shape == (2, 3, *size) and out.is_contiguous()


def test_inference_mode_gives_the_training_output() -> None:
    model = _trained_looking(RestorerConfig())
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        with torch.enable_grad():
            train_out = model(x).detach()
        infer_out = model(x)
    assert (train_out - infer_out).abs().max() < 1e-5


@pytest.mark.parametrize("in_channels", [3, 4])
def test_fresh_restorer_is_identity_on_rgb(in_channels: int) -> None:
    model = Restorer(RestorerConfig(in_channels=in_channels))
    x = torch.rand(1, in_channels, 33, 47)
    assert (model(x) - x[:, :3]).abs().max() < 1e-6


def test_forward_is_not_clamped_but_restore_is() -> None:
    model = Restorer(RestorerConfig())
    x = torch.rand(3, 20, 20) * 2 - 0.5
    raw = model(x[None])[0]
    assert raw.min() < 0 and raw.max() > 1
    out = restore(model, x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out, x.clamp(0, 1), atol=1e-6)


def test_gradient_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    model = Restorer(RestorerConfig(in_channels=4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, target = torch.rand(2, 4, 32, 32), torch.rand(2, 3, 32, 32)
    for _ in range(2):  # step 1 moves the zero-initialised head off zero; step 2's gradient must reach everything
        opt.zero_grad()
        nn.functional.mse_loss(model(x), target).backward()
        if _ == 0:
            opt.step()
    dead = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert not dead, f"no gradient reaches {dead}"


def test_save_load_round_trip_is_exact_in_fp32_and_close_in_fp16(tmp_path) -> None:
    model = _trained_looking(RestorerConfig(task="rain", width=8))
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        expected = model(x)
    save_restorer(model, tmp_path / "fp32", card={"task": "rain"})
    save_restorer(model, tmp_path / "fp16", dtype=torch.float16)
    assert json.loads((tmp_path / "fp32" / CONFIG_FILE).read_text())["kind"] == "restorer"

    loaded = load_restorer(tmp_path / "fp32")
    assert not loaded.training and loaded.config == model.config
    with torch.inference_mode():
        assert torch.equal(loaded(x), expected)
        half_err = (load_restorer(tmp_path / "fp16")(x) - expected).abs().max()
    assert 0 < half_err < 1e-3
    assert (tmp_path / "fp16" / MODEL_FILE).stat().st_size < 0.6 * (tmp_path / "fp32" / MODEL_FILE).stat().st_size


def test_loading_skips_the_random_init_on_its_own_thread_only() -> None:
    import threading

    from diffloss import nets

    torch.manual_seed(0)
    built = {}
    with nets._filled_from_checkpoint():
        Restorer(RestorerConfig(width=8))
        after = torch.rand(3)  # nothing was drawn: the RNG is where the seed left it
        other = threading.Thread(target=lambda: built.setdefault("model", Restorer(RestorerConfig(width=8))))
        other.start()
        other.join()
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))
    # A restorer built meanwhile on another thread (a Train run), and one built here afterwards, are drawn as usual.
    for model in (built["model"], Restorer(RestorerConfig(width=8))):
        assert 0.01 < float(model.stem[1].weight.std()) < 1.0


def test_loading_a_prior_folder_says_it_is_not_a_restorer(tmp_path) -> None:
    save_model_folder(tmp_path, {"w": torch.zeros(2)}, {"kind": "prior", "sample_size": 64})
    with pytest.raises(CheckpointError, match="restorer"):
        load_restorer(tmp_path)


def test_weights_that_do_not_fit_the_config_name_the_folder(tmp_path) -> None:
    folder = tmp_path / "mismatched"
    save_restorer(Restorer(RestorerConfig(width=8)), folder)
    config = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**config, "width": 16}))
    with pytest.raises(CheckpointError, match="mismatched"):
        load_restorer(folder)


class _LocalNet(nn.Module):
    """A restorer stand-in that sees 2 px around each pixel (inside the discarded tile margin, overlap // 4)
    and pads like Restorer, so exact tiling is possible and any mismatch is the tiling's fault."""

    def __init__(self) -> None:
        super().__init__()
        self.config = RestorerConfig()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.config.multiple)
        return (x + self.body(x))[..., :h, :w]


def _tiling_errors(model: nn.Module) -> tuple[float, float]:
    """Max abs difference to the whole-image output: blended tiles, and abutting tiles without blending."""
    x = torch.rand(1, model.config.in_channels, 200, 150, generator=torch.Generator().manual_seed(1))
    full = restore(model, x)
    blended = restore(model, x, tile=64, overlap=16)
    naive = restore(model, x, tile=64, overlap=0)  # abutting tiles, no blend: seams at every tile edge
    return (blended - full).abs().max().item(), (naive - full).abs().max().item()


def test_tiling_is_exact_for_a_net_that_sees_less_than_the_margin() -> None:
    blended, naive = _tiling_errors(_LocalNet())
    assert blended < 1e-5
    assert naive > 1e-2  # the naive tiling shows seams, so this comparison can fail


def test_tiling_a_restorer_leaves_no_seams() -> None:
    model = _trained_looking(RestorerConfig(), seed=3)
    blended, naive = _tiling_errors(model)
    # The UNet sees further than the overlap and its channel attention pools over the whole input, so tiles
    # cannot match exactly. Measured: blended 0.006-0.016 for nets trained 400 steps (noise, sr4) and ~0.008
    # for this one; abutting tiles 0.09-0.30; tiles off the net's 16-px grid gave ~0.15 even when blended.
    assert blended < 3e-2
    assert naive > 4 * blended


def test_restore_keeps_batch_layout_and_tiles_4_channel_input() -> None:
    model = Restorer(RestorerConfig(in_channels=4))
    x = torch.rand(2, 4, 40, 50)
    out = restore(model, x, tile=32, overlap=8)
    assert out.shape == (2, 3, 40, 50)
    assert (out - x[:, :3]).abs().max() < 1e-6
    with pytest.raises(ValueError):
        restore(model, torch.rand(3, 16, 16))  # wrong channel count for inpaint
    with pytest.raises(ValueError):
        restore(model, x, tile=0)
    # the default overlap (32) is capped for a small tile instead of failing
    nudged = _trained_looking(RestorerConfig(in_channels=4))
    assert torch.equal(restore(nudged, x, tile=32), restore(nudged, x, tile=32, overlap=16))
