"""The prior: loads like any diffusers model, stays frozen, works at any size, and purifies."""

import shutil

import pytest
import torch

from diffloss.prior import PRIOR_PRESETS, DiffusionPrior, PriorLoadError
from tests.helpers import tiny_prior


@pytest.fixture(scope="module")
def saved_prior(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prior")
    prior = tiny_prior()
    prior.save_pretrained(folder)
    return prior, folder


def test_loads_from_a_model_folder_and_predicts_identically(saved_prior):
    prior, folder = saved_prior
    loaded = DiffusionPrior.from_pretrained(folder)
    x_t, t = torch.randn(2, 3, 16, 16), torch.tensor([3, 70])
    assert torch.equal(loaded.predict(x_t, t).eps, prior.predict(x_t, t).eps)
    assert loaded.num_timesteps == 100


def test_a_prior_stored_in_float16_is_half_the_size_and_computes_in_float32(saved_prior, tmp_path):
    """pretrained/ stores every weight in float16 (issue #13); the prior must still compute in float32."""
    from safetensors import safe_open

    prior, folder = saved_prior
    prior.save_pretrained(tmp_path, dtype=torch.float16)
    [half_file], [full_file] = tmp_path.glob("*.safetensors"), folder.glob("*.safetensors")
    with safe_open(str(half_file), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert half_file.stat().st_size < 0.55 * full_file.stat().st_size
    loaded = DiffusionPrior.from_pretrained(tmp_path)
    assert {p.dtype for p in loaded.unet.parameters()} == {torch.float32}
    assert {p.dtype for p in prior.unet.parameters()} == {torch.float32}  # saving left the prior as it was
    x_t, t = torch.randn(2, 3, 16, 16), torch.tensor([3, 70])
    full, half = prior.predict(x_t, t).eps, loaded.predict(x_t, t).eps
    loaded.save_pretrained(tmp_path / "again")  # a loaded prior saved again does not carry the folder it came from
    assert str(tmp_path) not in (tmp_path / "again" / "config.json").read_text()
    assert half.dtype == torch.float32 and not torch.equal(half, full)  # rounded weights, float32 arithmetic
    assert torch.allclose(half, full, atol=1e-2, rtol=1e-2)


def test_loading_twice_logs_no_accelerate_warning(saved_prior):
    """diffusers warned "Cannot initialize model with low cpu memory usage because accelerate was not found" at
    every load where accelerate is not installed (it is not a dependency): the studio's console stayed noisy."""
    import logging

    _, folder = saved_prior
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("diffusers")
    logger.addHandler(handler)
    try:
        for _ in range(2):
            DiffusionPrior.from_pretrained(folder)
    finally:
        logger.removeHandler(handler)
    assert not [r for r in records if "low cpu memory" in r.getMessage()]


def test_loads_from_a_pipeline_folder(saved_prior, tmp_path):
    prior, folder = saved_prior
    prior.unet.save_pretrained(tmp_path / "unet")
    prior.scheduler.save_pretrained(tmp_path / "scheduler")
    loaded = DiffusionPrior.from_pretrained(tmp_path)
    assert loaded.parameter_count() == prior.parameter_count()


def test_missing_folder_names_the_path(tmp_path):
    with pytest.raises(PriorLoadError, match="not found"):
        DiffusionPrior.from_pretrained(tmp_path / "nowhere")


def test_offline_hub_id_gives_a_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PriorLoadError, match="google/ddpm-ema-church-256.*hub"):
        DiffusionPrior.from_pretrained("google/ddpm-ema-church-256")


def test_folder_without_scheduler_is_refused(saved_prior, tmp_path):
    _, folder = saved_prior
    shutil.copytree(folder, tmp_path / "p")
    (tmp_path / "p" / "scheduler_config.json").unlink()
    with pytest.raises(PriorLoadError, match="scheduler_config.json"):
        DiffusionPrior.from_pretrained(tmp_path / "p")


def test_restorer_folder_is_not_a_prior(tmp_path):
    (tmp_path / "config.json").write_text('{"kind": "restorer"}')
    with pytest.raises(PriorLoadError, match="UNet2DModel"):
        DiffusionPrior.from_pretrained(tmp_path)


def test_prior_is_frozen():
    prior = tiny_prior()
    assert not prior.unet.training
    assert all(not p.requires_grad for p in prior.unet.parameters())


def test_gradient_reaches_the_input_but_not_the_weights():
    prior = tiny_prior()
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    out = prior.predict(prior.add_noise(x, 50, torch.randn(1, 3, 16, 16)), 50)
    (out.eps.square().mean() + out.h.square().mean()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in prior.unet.parameters())


def test_add_noise_uses_the_model_scale():
    prior = tiny_prior()
    x, eps = torch.rand(1, 3, 8, 8), torch.randn(1, 3, 8, 8)
    a = prior.alphas_cumprod[40]
    assert torch.allclose(prior.add_noise(x, 40, eps), a.sqrt() * (2 * x - 1) + (1 - a).sqrt() * eps)


@pytest.mark.parametrize("preset,size,expected", [
    ("tiny", (17, 23), (32, 9, 12)),
    ("small", (40, 33), (128, 5, 5)),
])
def test_any_size_and_h_shape(preset, size, expected):
    torch.manual_seed(0)
    prior = PRIOR_PRESETS[preset].build()
    out = prior.predict(torch.randn(2, 3, *size), 10)
    assert out.eps.shape == (2, 3, *size)
    assert out.h.shape == (2, *expected) == (2, *prior.h_shape(*size))


def test_tiny_images_are_padded_without_error():
    prior = tiny_prior()
    assert prior.predict(torch.randn(1, 3, 1, 1), 0).eps.shape == (1, 3, 1, 1)


def test_timesteps_out_of_range_are_refused():
    prior = tiny_prior()
    with pytest.raises(ValueError, match=r"\[0, 99\]"):
        prior.predict(torch.randn(1, 3, 8, 8), 100)


def test_view_returns_displayable_images():
    prior = tiny_prior()
    v = prior.view(torch.rand(2, 3, 16, 16), torch.tensor([5, 90]), torch.randn(2, 3, 16, 16))
    for img in (v.x_t, v.x0_hat):
        assert img.shape == (2, 3, 16, 16) and img.min() >= 0 and img.max() <= 1
    assert v.h.shape == (2, 32, 8, 8)


def test_purify_at_t0_barely_changes_the_image_and_is_seeded():
    prior = tiny_prior()
    x = torch.rand(1, 3, 16, 16)
    assert (prior.purify(x, 0, 1) - x).abs().max() < 0.05
    a = prior.purify(x, 60, 4, torch.Generator().manual_seed(1))
    b = prior.purify(x, 60, 4, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1


def test_sample_gives_seeded_images_in_range():
    prior = tiny_prior()
    a = prior.sample(2, 16, 16, num_steps=4, generator=torch.Generator().manual_seed(0))
    b = prior.sample(2, 16, 16, num_steps=4, generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, 3, 16, 16) and torch.equal(a, b) and a.min() >= 0 and a.max() <= 1



def test_threads_sharing_a_prior_each_get_their_own_h():
    """The loss runs two forwards of one prior at once: each must see its own mid-block features, not the other's."""
    from concurrent.futures import ThreadPoolExecutor

    prior = tiny_prior()
    inputs = [torch.randn(1, 3, 16 + 8 * i, 16, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    alone = [prior.predict(x, 10) for x in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda x: prior.predict(x, 10), inputs * 3))
    for i, out in enumerate(together):
        ref = alone[i % len(inputs)]
        assert out.h.shape == ref.h.shape
        assert torch.equal(out.h, ref.h) and torch.equal(out.eps, ref.eps)


def test_two_threads_inside_the_mid_block_at_once_each_get_their_own_h(monkeypatch):
    """Both callers are held inside the shared mid block until the other arrives, so their forwards surely overlap
    there: each still gets exactly the h (and eps) a call alone gives."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    prior = tiny_prior()
    inputs = [torch.randn(1, 3, 16 + 8 * i, 16, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    alone = [prior.predict(x, 10) for x in inputs]
    both_inside = threading.Barrier(2, timeout=30)
    mid = prior.unet.mid_block
    forward = mid.forward

    def meet_then_forward(*args, **kwargs):
        both_inside.wait()
        return forward(*args, **kwargs)

    monkeypatch.setattr(mid, "forward", meet_then_forward)
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(lambda x: prior.predict(x, 10), inputs))
    for out, ref in zip(together, alone):
        assert out.h.shape == ref.h.shape
        assert torch.equal(out.h, ref.h) and torch.equal(out.eps, ref.eps)


def test_a_prior_leaves_no_hook_on_its_unet():
    """The UNet stays a plain module (a training loop deep-copies it for its EMA; a hook would come along)."""
    import copy

    prior = tiny_prior()
    names = list(prior.unet.state_dict())
    prior.predict(torch.randn(1, 3, 16, 16), 10)
    assert not prior.unet.mid_block._forward_hooks
    assert list(prior.unet.state_dict()) == names  # the per-call view leaves the UNet's modules as they were
    copy.deepcopy(prior.unet)
