"""ADM -> diffusers conversion: numerically the same network, the same h, the same schedule; bad files refused."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from diffloss.convert_adm import (
    ADM_CONFIG_FILE, ADM_PRESETS, GUIDED_DIFFUSION_DEFAULTS, ADMConfig, build_unet, config_from_flags,
    convert_state_dict, load_adm_state_dict, main, parse_flag_string, scheduler_config, target_shapes,
)
from diffloss.prior import DiffusionPrior
from tests.adm_reference import ReferenceADM

TOL = 1e-5

# Three small ADM shapes that differ where a layout assumption could hide: number of levels, which levels attend
# (including full resolution), heads from num_head_channels or from num_heads, legacy or new qkv order,
# scale-shift norm or not, learned sigma or not, one or two res blocks.
CONFIGS = {
    "legacy-qkv-2res": ADMConfig(image_size=32, num_channels=32, num_res_blocks=2, channel_mult=(1, 2, 2),
                                 attention_resolutions=(16, 8), num_head_channels=16),
    "num-heads-new-order": ADMConfig(image_size=64, num_channels=32, num_res_blocks=1, channel_mult=(1, 2),
                                     attention_resolutions=(32,), num_head_channels=-1, num_heads=2,
                                     use_new_attention_order=True, learn_sigma=False, use_scale_shift_norm=False),
    "attn-everywhere-4-levels": ADMConfig(image_size=32, num_channels=32, num_res_blocks=1, channel_mult=(1, 1, 2, 2),
                                          attention_resolutions=(32, 16, 8, 4), num_head_channels=32),
    # guided-diffusion's default heads: num_heads=4 at every attention layer, no num_head_channels
    "default-heads": ADMConfig(image_size=32, num_channels=32, num_res_blocks=1, channel_mult=(1, 2, 2),
                               attention_resolutions=(16, 8), num_heads=4, num_head_channels=-1),
}
# guided-diffusion's README: MODEL_FLAGS of 256x256_diffusion_uncond.pt, the paper's prior, verbatim
PAPER_FLAGS = ("--attention_resolutions 32,16,8 --class_cond False --diffusion_steps 1000 --image_size 256 "
               "--learn_sigma True --noise_schedule linear --num_channels 256 --num_head_channels 64 "
               "--num_res_blocks 2 --resblock_updown True --use_fp16 True --use_scale_shift_norm True")


def random_reference(cfg: ADMConfig, seed: int = 0) -> ReferenceADM:
    """Every weight random: ADM zero-initialises its output convs, which would hide whole branches from a test."""
    torch.manual_seed(seed)
    model = ReferenceADM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    return model


def forward_with_h(model: torch.nn.Module, mid: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, diffusers: bool):
    """(output, middle-block output) of one forward."""
    kept: list[torch.Tensor] = []
    handle = mid.register_forward_hook(lambda _m, _i, out: kept.append(out))
    try:
        with torch.no_grad():
            out = model(x, t).sample if diffusers else model(x, t)
    finally:
        handle.remove()
    return out, kept[0]


@pytest.fixture(scope="module", params=list(CONFIGS))
def converted(request):
    cfg = CONFIGS[request.param]
    ref = random_reference(cfg)
    return cfg, ref, build_unet(cfg, ref.state_dict()).eval()


@pytest.mark.parametrize("size", [(32, 32), (16, 48)])
def test_converted_unet_matches_adm_eps_and_h(converted, size):
    cfg, ref, unet = converted
    torch.manual_seed(1)
    x = torch.randn(4, 3, *size)
    t = torch.tensor([0, 1, 500, 999])
    out_ref, h_ref = forward_with_h(ref, ref.middle_block, x, t, diffusers=False)
    out_new, h_new = forward_with_h(unet, unet.mid_block, x, t, diffusers=True)
    assert out_new.shape == out_ref.shape == (4, 6 if cfg.learn_sigma else 3, *size)
    assert h_new.shape == h_ref.shape == (4, cfg.level_channels[-1], size[0] // 2 ** (len(cfg.channel_mult) - 1),
                                          size[1] // 2 ** (len(cfg.channel_mult) - 1))
    assert out_ref.abs().max() > 0.1 and h_ref.abs().max() > 0.1  # a real signal, not zeros matching zeros
    assert (out_new - out_ref).abs().max() < TOL
    assert (h_new - h_ref).abs().max() < TOL


def test_a_plain_qkv_split_would_be_caught():
    """Negative control: reading ADM's per-head interleaved qkv as [q | k | v] changes eps far beyond TOL."""
    cfg = CONFIGS["legacy-qkv-2res"]
    ref = random_reference(cfg)
    wrong = build_unet(replace(cfg, use_new_attention_order=True), ref.state_dict()).eval()
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 600])
    out_ref, _ = forward_with_h(ref, ref.middle_block, x, t, diffusers=False)
    out_wrong, _ = forward_with_h(wrong, wrong.mid_block, x, t, diffusers=True)
    assert (out_wrong - out_ref).abs().max() > 1e-3


def test_256_uncond_preset_is_the_papers_adm_layout():
    """The preset's reference state dict (built on the meta device: no memory) converts into every tensor."""
    cfg = ADM_PRESETS["256-uncond"]
    with torch.device("meta"):
        adm = ReferenceADM(cfg).state_dict()
    converted = convert_state_dict(adm, cfg)
    shapes = target_shapes(cfg)
    assert set(converted) == set(shapes)
    assert all(converted[k].shape == shapes[k] for k in shapes)
    assert sum(v.numel() for v in adm.values()) == sum(s.numel() for s in shapes.values()) == 552_814_086
    assert adm["middle_block.1.qkv.weight"].shape == (3 * 1024, 1024, 1)  # 16 heads of 64 channels at 1/32
    assert shapes["conv_out.weight"][0] == 6  # learned sigma


def test_reference_is_guided_diffusions_own_unet():
    """When guided-diffusion is importable (e.g. the guided-diffusion-sdk package), the reference equals it."""
    gd_unet = pytest.importorskip("guided_diffusion.unet", reason="guided-diffusion is not installed (optional)")
    for cfg in CONFIGS.values():
        torch.manual_seed(0)
        gd = gd_unet.UNetModel(
            image_size=cfg.image_size, in_channels=3, model_channels=cfg.num_channels,
            out_channels=6 if cfg.learn_sigma else 3, num_res_blocks=cfg.num_res_blocks,
            attention_resolutions=tuple(cfg.image_size // r for r in cfg.attention_resolutions),
            channel_mult=cfg.channel_mult, num_heads=cfg.num_heads, num_head_channels=cfg.num_head_channels,
            num_heads_upsample=cfg.num_heads_upsample,
            use_scale_shift_norm=cfg.use_scale_shift_norm, resblock_updown=True,
            use_new_attention_order=cfg.use_new_attention_order,
        ).eval()
        ref = random_reference(cfg)
        assert list(gd.state_dict()) == list(ref.state_dict())
        gd.load_state_dict(ref.state_dict())
        x, t = torch.randn(2, 3, 32, 32), torch.tensor([3, 900])
        out_gd, h_gd = forward_with_h(gd, gd.middle_block, x, t, diffusers=False)
        out_ref, h_ref = forward_with_h(ref, ref.middle_block, x, t, diffusers=False)
        assert (out_gd - out_ref).abs().max() < 1e-6 and (h_gd - h_ref).abs().max() < 1e-6


def test_scheduler_is_adms_linear_schedule():
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(**scheduler_config(ADM_PRESETS["256-uncond"]))
    betas = [1e-4 + (0.02 - 1e-4) * i / 999 for i in range(1000)]  # ADM: np.linspace(1e-4, 0.02, 1000), float64
    alpha_bar = torch.tensor(betas, dtype=torch.float64).neg().add(1).cumprod(0)
    assert scheduler.config.num_train_timesteps == 1000
    assert (scheduler.alphas_cumprod.double() - alpha_bar).abs().max() < 1e-6
    assert scheduler.config.variance_type == "learned_range"
    cosine = DDPMScheduler(**scheduler_config(replace(ADM_PRESETS["256-uncond"], noise_schedule="cosine")))
    def alpha_bar(s: float) -> float:  # improved-diffusion's cosine schedule, s = (t + 1) / T
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2 / math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    assert cosine.alphas_cumprod[499].item() == pytest.approx(alpha_bar(500 / 1000), abs=1e-6)


# ---------------------------------------------------------------------------------------------- refusals
def small_state_dict() -> tuple[ADMConfig, dict[str, torch.Tensor]]:
    cfg = CONFIGS["legacy-qkv-2res"]
    return cfg, ReferenceADM(cfg).state_dict()


def test_missing_keys_are_named():
    cfg, adm = small_state_dict()
    del adm["middle_block.1.qkv.weight"], adm["out.2.bias"]
    with pytest.raises(ValueError, match=r"missing keys: middle_block\.1\.qkv\.weight, out\.2\.bias"):
        convert_state_dict(adm, cfg)


def test_unexpected_keys_are_named_with_a_hint_for_class_conditional_models():
    cfg, adm = small_state_dict()
    adm["label_emb.weight"] = torch.zeros(1000, 128)
    with pytest.raises(ValueError, match=r"unexpected keys \(label_emb: a class-conditional model\): label_emb\.weight"):
        convert_state_dict(adm, cfg)


def test_mismatched_shapes_are_named():
    cfg, adm = small_state_dict()
    adm["input_blocks.0.0.weight"] = torch.zeros(32, 4, 3, 3)
    message = re.escape("mismatched shapes: input_blocks.0.0.weight (32, 4, 3, 3) (expected (32, 3, 3, 3))")
    with pytest.raises(ValueError, match=message):
        convert_state_dict(adm, cfg)


def test_a_state_dict_of_another_shape_is_refused_not_guessed():
    _, adm = small_state_dict()
    with pytest.raises(ValueError, match=r"does not fit the ADM config \(32px.*missing keys: .*unexpected keys"):
        convert_state_dict(adm, CONFIGS["attn-everywhere-4-levels"])


def test_unsupported_configs_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="class-conditional"):
        ADMConfig(class_cond=True)
    with pytest.raises(ValueError, match="head widths"):
        ADMConfig(num_head_channels=-1, num_heads=4)  # 256-uncond shape with 4 heads: 64..256-wide heads
    with pytest.raises(ValueError, match=r"unknown ADM config keys \['num_chanels'\]"):
        ADMConfig.from_dict({"num_chanels": 128})
    assert ADMConfig.from_dict({"channel_mult": "1,1,2,2,4,4", "attention_resolutions": "32,16,8"}) == ADMConfig()


def test_checkpoint_reading_runs_no_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weights": torch.zeros(1), "object": ADMConfig()}, path)  # a dataclass needs unpickling code
    with pytest.raises(ValueError, match="weights_only=True"):
        load_adm_state_dict(path)
    with pytest.raises(ValueError, match="checkpoint not found"):
        load_adm_state_dict(tmp_path / "absent.pt")


# ----------------------------------------------------------------------------------- end to end: CLI -> prior
def test_cli_writes_a_folder_that_diffusion_prior_loads(tmp_path, capsys):
    cfg = CONFIGS["legacy-qkv-2res"]
    ref = random_reference(cfg)
    checkpoint = tmp_path / "adm.pt"
    torch.save(ref.state_dict(), checkpoint)
    out = tmp_path / "prior"
    assert main([str(checkpoint), str(out), "--config", json.dumps(asdict(cfg))]) == 0
    assert (out / "diffusion_pytorch_model.safetensors").is_file()
    assert json.loads((out / ADM_CONFIG_FILE).read_text())["converted_from"] == "adm.pt"

    prior = DiffusionPrior.from_pretrained(out)
    assert prior.unet.config.out_channels == 6 and prior.num_timesteps == 1000
    torch.manual_seed(2)
    x_t, t = torch.randn(2, 3, 32, 32), torch.tensor([20, 700])
    got = prior.predict(x_t, t)
    out_ref, h_ref = forward_with_h(ref, ref.middle_block, x_t, t, diffusers=False)
    assert got.eps.shape == (2, 3, 32, 32)
    assert (got.eps - out_ref[:, :3]).abs().max() < TOL  # eps: the first 3 of ADM's 6 output channels
    assert (got.h - h_ref).abs().max() < TOL  # the prior's h is ADM's middle_block output

    assert main([str(tmp_path / "absent.pt"), str(tmp_path / "never")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
    (tmp_path / "a-file").write_text("")
    assert main([str(checkpoint), str(tmp_path / "a-file")]) == 2
    assert "is a file" in capsys.readouterr().err


# ------------------------------------------------------------------------- guided-diffusion's flags and defaults
def test_omitted_flags_take_guided_diffusions_defaults_num_heads_4(tmp_path):
    """A model built with guided-diffusion's default heads (num_heads=4, no num_head_channels) and converted from
    flags that leave the heads out: 4 heads of 16 channels, not the 256-uncond preset's heads of 64."""
    cfg = CONFIGS["default-heads"]
    ref = random_reference(cfg)
    checkpoint = tmp_path / "adm.pt"
    torch.save(ref.state_dict(), checkpoint)
    flags = {"image_size": 32, "num_channels": 32, "num_res_blocks": 1, "channel_mult": "1,2,2",
             "attention_resolutions": "16,8", "learn_sigma": True, "resblock_updown": True}  # no num_heads*
    out = tmp_path / "prior"
    assert main([str(checkpoint), str(out), "--config", json.dumps(flags)]) == 0
    prior = DiffusionPrior.from_pretrained(out)
    assert prior.unet.mid_block.attentions[0].heads == 4
    torch.manual_seed(3)
    x_t, t = torch.randn(2, 3, 32, 32), torch.tensor([5, 800])
    got = prior.predict(x_t, t)
    out_ref, h_ref = forward_with_h(ref, ref.middle_block, x_t, t, diffusers=False)
    assert (got.eps - out_ref[:, :3]).abs().max() < TOL
    assert (got.h - h_ref).abs().max() < TOL


def test_the_papers_flag_list_is_the_256_uncond_preset_and_use_fp16_is_noted(tmp_path, capsys):
    cfg, notes = config_from_flags(parse_flag_string(PAPER_FLAGS))
    assert cfg == ADM_PRESETS["256-uncond"]
    assert len(notes) == 1 and notes[0].startswith("use_fp16=True ignored") and "float32" in notes[0]
    # the same string on the command line: accepted, the note printed (the checkpoint is absent: exit 2 after it)
    assert main([str(tmp_path / "absent.pt"), str(tmp_path / "out"), "--config", PAPER_FLAGS]) == 2
    captured = capsys.readouterr()
    assert "note: use_fp16=True ignored" in captured.out and "checkpoint not found" in captured.err


def test_flags_left_out_are_guided_diffusions_defaults():
    cfg, notes = config_from_flags({"image_size": 64, "num_head_channels": 32, "resblock_updown": "True"})
    assert notes == []
    assert cfg.channel_mult == (1, 2, 3, 4)  # create_model's choice for 64 px when channel_mult is ""
    assert (cfg.num_channels, cfg.attention_resolutions, cfg.learn_sigma) == (128, (16, 8), False)
    assert GUIDED_DIFFUSION_DEFAULTS["num_heads"] == 4 and GUIDED_DIFFUSION_DEFAULTS["num_head_channels"] == -1
    with pytest.raises(ValueError, match="resblock_updown=False .guided-diffusion's default"):
        config_from_flags({"image_size": 64, "num_head_channels": 32})
    with pytest.raises(ValueError, match="no channel_mult given .* image_size 96"):
        config_from_flags({"image_size": 96, "resblock_updown": True})


def test_num_heads_upsample_is_refused_with_the_reason_or_noted_when_it_has_no_effect():
    with pytest.raises(ValueError, match=r"num_heads_upsample=2 differs from num_heads=4: the up path.*one head width"):
        config_from_flags({**json.loads(json.dumps(asdict(CONFIGS["default-heads"]))), "num_heads_upsample": 2})
    cfg, notes = config_from_flags({"num_heads_upsample": 2}, base=ADM_PRESETS["256-uncond"])
    assert cfg == ADM_PRESETS["256-uncond"] and "no effect with num_head_channels=64" in notes[0]


def test_channel_mult_starting_at_2_is_refused_with_its_cause():
    with pytest.raises(ValueError) as err:
        config_from_flags({"image_size": 32, "num_channels": 32, "channel_mult": "2,2,4", "num_head_channels": 32,
                           "resblock_updown": True})
    assert "channel_mult starts at 2, not 1: ADM's timestep embedding is num_channels=32 wide" in str(err.value)
    assert "mismatched shapes" not in str(err.value)


def test_unknown_flags_are_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"unknown ADM config keys \['num_chanels'\]: not a guided-diffusion model or "
                                         r"diffusion flag.*a typo"):
        config_from_flags({"num_chanels": 128})
    with pytest.raises(ValueError, match="learn_sigma: expected a boolean"):
        config_from_flags({"learn_sigma": "maybe"})


def test_an_x0_predicting_model_is_marked_as_such():
    cfg, _ = config_from_flags({"predict_xstart": "True"}, base=ADM_PRESETS["256-uncond"])
    assert scheduler_config(cfg)["prediction_type"] == "sample"  # DiffusionPrior turns it into eps
    with pytest.raises(ValueError, match="rescale_timesteps=True with diffusion_steps=4000"):
        config_from_flags({"rescale_timesteps": True, "diffusion_steps": 4000}, base=ADM_PRESETS["256-uncond"])


def adm_alphas_cumprod(schedule: str, steps: int) -> np.ndarray:
    """guided-diffusion's a_t in float64: get_named_beta_schedule, then the cumulative product (gaussian_diffusion)."""
    if schedule == "linear":
        scale = 1000 / steps
        betas = np.linspace(scale * 1e-4, scale * 0.02, steps, dtype=np.float64)
    else:
        def alpha_bar(s: float) -> float:
            return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = np.array([min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), 0.999) for i in range(steps)])
    return np.cumprod(1.0 - betas)


@pytest.mark.parametrize("schedule,steps", [("linear", 1000), ("cosine", 4000)])
def test_the_priors_noise_coefficients_are_guided_diffusions_float64_ones(schedule, steps):
    from diffloss.convert_adm import build_prior

    prior = build_prior(replace(CONFIGS["legacy-qkv-2res"], noise_schedule=schedule, diffusion_steps=steps))
    t = torch.arange(steps)
    # x01 = 0.5 is 0 on the model's scale, so x_t = sqrt(1 - a_t) * eps: with eps = 1, the coefficient itself
    got = prior.add_noise(torch.full((steps, 3, 1, 1), 0.5), t, torch.ones(steps, 3, 1, 1))[:, 0, 0, 0].double()
    expected = torch.from_numpy(np.sqrt(1.0 - adm_alphas_cumprod(schedule, steps)))
    assert ((got - expected).abs() / expected).max() < 1e-6
