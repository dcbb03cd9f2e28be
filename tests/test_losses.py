"""Losses push the right way; the perceptual loss measures blur; missing VGG weights say what to do."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SHARED
from PIL import Image

from srcore.losses import (
    GAN_TYPES,
    REAL_ESRGAN_WEIGHTS,
    SEED_ARTICLE_WEIGHTS,
    GeneratorLoss,
    LossWeights,
    PerceptualLoss,
    VGG19WeightsMissing,
    charbonnier_loss,
    discriminator_loss,
    generator_adversarial_loss,
    pixel_loss,
)


@pytest.mark.parametrize("gan_type", GAN_TYPES)
@pytest.mark.parametrize("relativistic", [False, True])
def test_adversarial_losses_push_the_right_way(gan_type, relativistic):
    """One gradient step on D's loss raises real logits and lowers fake ones; on G's loss, raises fake ones."""
    # inside every loss's active range: LSGAN's targets 1/0, hinge's margins +-1
    real = torch.tensor([0.3, 0.6, 0.1], requires_grad=True)
    fake = torch.tensor([0.2, 0.5, 0.4], requires_grad=True)
    discriminator_loss(real, fake, gan_type, relativistic).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()

    fake_g = fake.detach().clone().requires_grad_(True)
    generator_adversarial_loss(fake_g, real.detach(), gan_type, relativistic).backward()
    assert (fake_g.grad < 0).all()

    # a few descent steps on D's loss separate real from fake
    real2, fake2 = real.detach().clone().requires_grad_(True), fake.detach().clone().requires_grad_(True)
    opt = torch.optim.SGD([real2, fake2], lr=0.5)
    before = discriminator_loss(real2, fake2, gan_type, relativistic).item()
    for _ in range(5):
        opt.zero_grad()
        discriminator_loss(real2, fake2, gan_type, relativistic).backward()
        opt.step()
    assert discriminator_loss(real2, fake2, gan_type, relativistic).item() < before
    assert real2.mean() > fake2.mean()


def test_relativistic_generator_needs_real_logits():
    with pytest.raises(ValueError, match="needs real_logits"):
        generator_adversarial_loss(torch.zeros(2), None, relativistic=True)


def test_pixel_losses():
    a, b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    assert pixel_loss(a, b, "l1").item() == pytest.approx(0.5)
    assert pixel_loss(a, b, "mse").item() == pytest.approx(0.25)
    assert charbonnier_loss(a, a).item() == pytest.approx(1e-3)  # eps at zero error: smooth, not 0
    assert charbonnier_loss(a, b).item() == pytest.approx(np.sqrt(0.25 + 1e-6), rel=1e-6)
    with pytest.raises(ValueError, match="'l3'"):
        pixel_loss(a, b, "l3")


def sample_image() -> torch.Tensor:
    path = SHARED / "datasets/Set5/HR/butterfly.png"
    if path.is_file():
        arr = np.asarray(Image.open(path).convert("RGB"), np.float32)[64:160, 64:160] / 255.0
    else:  # a fresh clone: a synthetic texture with edges at several scales
        yy, xx = np.mgrid[0:96, 0:96]
        arr = np.stack([(np.sin(xx / 3) > 0) * 0.8, (np.sin(yy / 5 + xx / 7) > 0) * 0.6, (xx + yy) / 192], -1)
    return torch.from_numpy(arr.astype(np.float32)).permute(2, 0, 1)[None]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = int(3 * sigma)
    g = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma**2))
    g = g / g.sum()
    k = (g[:, None] * g[None, :]).expand(3, 1, -1, -1)
    return F.conv2d(F.pad(x, (r, r, r, r), mode="reflect"), k, groups=3)


@pytest.mark.parametrize("criterion", ["l1", "l2"])
def test_perceptual_loss_is_zero_for_identical_images_and_grows_with_blur(criterion):
    torch.manual_seed(0)
    loss = PerceptualLoss(REAL_ESRGAN_WEIGHTS.perceptual_layers, criterion, style_weight=0.5, random_init=True)
    img = sample_image()
    assert loss(img, img).item() == 0.0
    values = [loss(gaussian_blur(img, s), img).item() for s in (0.6, 1.2, 2.4)]
    assert 0 < values[0] < values[1] < values[2]


def test_perceptual_loss_trains_the_input_and_keeps_vgg_frozen():
    torch.manual_seed(0)
    loss = PerceptualLoss({"conv2_2": 1.0}, random_init=True)
    loss.train()
    assert not loss.vgg.training and not any(p.requires_grad for p in loss.parameters())
    pred = torch.rand(1, 3, 32, 32, requires_grad=True)
    loss(pred, torch.rand(1, 3, 32, 32)).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_missing_vgg_weights_say_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("SRCORE_VGG19_WEIGHTS", raising=False)
    with pytest.raises(VGG19WeightsMissing) as err:
        PerceptualLoss(download=False)
    message = str(err.value)
    assert "vgg19-dcbb9e9d.pth" in message and str(tmp_path / "torch") in message
    assert "SRCORE_VGG19_WEIGHTS" in message and "random_init=True" in message


def test_vgg_weights_from_a_local_file(tmp_path, monkeypatch):
    from torchvision.models import vgg19

    torch.manual_seed(3)
    reference = vgg19(weights=None)
    path = tmp_path / "vgg19.pth"
    torch.save(reference.state_dict(), path)
    loss = PerceptualLoss({"conv1_2": 1.0}, weights_path=path)
    torch.testing.assert_close(loss.vgg.features[0].weight, reference.features[0].weight)
    monkeypatch.setenv("SRCORE_VGG19_WEIGHTS", str(path))
    assert torch.equal(PerceptualLoss({"conv1_2": 1.0}).vgg.features[2].weight, reference.features[2].weight)


def test_weighted_total_and_config_validation():
    torch.manual_seed(0)
    perceptual = PerceptualLoss({"conv1_2": 1.0}, random_init=True)
    sr, hr = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    fake_logits, real_logits = torch.randn(2, 1), torch.randn(2, 1)
    total, terms = GeneratorLoss(SEED_ARTICLE_WEIGHTS, perceptual)(sr, hr, fake_logits, real_logits)
    assert set(terms) == {"pixel", "perceptual", "adversarial"}
    assert terms["pixel"].item() == pytest.approx(0.1 * F.mse_loss(sr, hr).item(), rel=1e-6)
    assert total.item() == pytest.approx(sum(v.item() for v in terms.values()), rel=1e-6)
    assert (SEED_ARTICLE_WEIGHTS.pixel, SEED_ARTICLE_WEIGHTS.perceptual, SEED_ARTICLE_WEIGHTS.adversarial) == (
        0.1, 0.6, 0.3)
    psnr_only, terms = GeneratorLoss(LossWeights(perceptual=0, adversarial=0))(sr, hr)
    assert set(terms) == {"pixel"}
    with pytest.raises(ValueError, match="'adversarial' must be a number >= 0"):
        LossWeights(adversarial=-1)
    with pytest.raises(ValueError, match="'gan_type'"):
        LossWeights(gan_type="wgan")
    with pytest.raises(ValueError, match="needs a PerceptualLoss"):
        GeneratorLoss(REAL_ESRGAN_WEIGHTS)
