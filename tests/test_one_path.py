"""One path from pixels to a network: the CLI and the bucket job give the same bytes, evaluation runs the
engine's modes (Y-channel models), and an out-of-memory error shrinks the work instead of failing it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bucket_helpers import good_images, run_job, summary_of
from PIL import Image

import srcore
from srcore.cli import main as cli_main
from srcore.evaluation import model_upscaler
from srcore.inference import Upscaler
from srcore.provenance import read_provenance


@pytest.mark.usefixtures("shared_ray")
@pytest.mark.xdist_group("ray")
def test_cli_and_bucket_job_write_byte_identical_outputs(tmp_path):
    source = tmp_path / "in"
    images = good_images(8, seed=5)  # RGB PNG, RGBA, gray, 16-bit RGB, JPEG, 16-bit gray, WebP, TIFF
    for key, (data, _, _) in images.items():
        (source / key).parent.mkdir(parents=True, exist_ok=True)
        (source / key).write_bytes(data)
    options = ["--alpha", "network", "--outscale", "3", "--png-compression", "4", "--quality", "90", "--tile", "24",
               "--tile-overlap", "8"]
    assert cli_main(["upscale", str(source), "-o", str(tmp_path / "cli"), *options]) == 0
    cli_outputs = {p.relative_to(tmp_path / "cli").as_posix(): p.read_bytes()
                   for p in (tmp_path / "cli").rglob("*") if p.is_file()}
    assert len(cli_outputs) == len(images)
    run = {read_provenance(data)["run"] for data in cli_outputs.values()}
    assert len(run) == 1  # the CLI's run id, passed to the job so that both write the same provenance

    run_id = run.pop()
    # both stage layouts: fused (this CPU machine's default) and split (a GPU cluster's, here on CPU actors)
    for layout in ("fused", "split"):
        result = run_job("--input", str(source), "--output", str(tmp_path / layout), *options, "--run-id", run_id,
                         "--stage-layout", layout)
        assert result.returncode == 0, result.stderr[-3000:]
        assert summary_of(result)["ok"] == len(images) and f"({layout}:" in result.stdout
        for relative, data in cli_outputs.items():
            job_output = (tmp_path / layout / relative).read_bytes()
            assert job_output == data, f"{relative}: the CLI and the bucket job ({layout}) wrote different bytes"
    for relative, data in cli_outputs.items():
        assert read_provenance(data)["source"] == (source / relative.rsplit(".", 1)[0]).as_posix() + \
            "." + next(k for k in images if k.rsplit(".", 1)[0] == relative.rsplit(".", 1)[0]).rsplit(".", 1)[1]


def test_y_channel_models_see_luma_and_keep_colour():
    """SRCNN-style Y models run through the same engine: colour in, colour out, chroma by bicubic."""
    model = srcore.create_model("srcnn-9-5-5", scale=2)
    assert model.descriptor.in_channels == 1
    with torch.no_grad():  # each layer passes its first channel through: the network is its bicubic input
        for conv in (model.conv1, model.conv2, model.conv3):
            conv.weight.zero_()
            conv.bias.zero_()
            k = conv.weight.shape[-1] // 2
            conv.weight[0, 0, k, k] = 1.0
    rng = np.random.default_rng(0)
    smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (6, 8, 3), np.uint8)).resize((32, 24), Image.BICUBIC))
    up = model_upscaler(model)(smooth)
    assert up.shape == (48, 64, 3) and up.dtype == np.uint8
    gray = model_upscaler(model)(smooth[..., 0])
    assert gray.shape == (48, 64)
    # the network's Y and the bicubic chroma give back the input's colours when downscaled again
    def ycbcr(rgb):
        return np.asarray(Image.fromarray(rgb).convert("YCbCr")).astype(float)

    small = np.asarray(Image.fromarray(up).resize((32, 24), Image.BICUBIC))
    assert np.abs(ycbcr(small) - ycbcr(smooth)).mean(axis=(0, 1)).max() < 3


class OutOfMemoryAbove(torch.nn.Module):
    """A network that fails as CUDA does when a forward pass holds more than ``limit`` input pixels."""

    def __init__(self, model: torch.nn.Module, limit: int):
        super().__init__()
        self.model, self.limit, self.descriptor = model, limit, model.descriptor
        self.largest = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = x.shape[0] * x.shape[2] * x.shape[3]
        if pixels > self.limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory: {pixels} pixels in one pass")
        return self.model(x)


def test_out_of_memory_retries_with_smaller_batches_then_tiles():
    torch.manual_seed(0)
    net = srcore.create_model("realesr-animevideov3", num_feat=8, num_conv=2, upscale=2).eval()
    image = np.random.default_rng(0).integers(0, 256, (96, 96, 3), np.uint8)
    reference = Upscaler(net, precision="fp32", tile=None, runtime="torch").upscale_network_input(image)
    limited = Upscaler(OutOfMemoryAbove(net, 48 * 48), precision="fp32", tile=None, batch_size=2, tile_overlap=8,
                       runtime="torch")  # CUDA's error, raised by a PyTorch network
    with pytest.warns(UserWarning, match="out of device memory"):
        out = limited.upscale_network_input(image)
    assert limited.tile is not None and limited.tile <= 48 and limited.batch_size == 1
    assert np.abs(out.astype(int) - reference.astype(int)).max() <= 1
    hopeless = Upscaler(OutOfMemoryAbove(net, 10), precision="fp32", tile=None, tile_overlap=8, runtime="torch")
    with pytest.raises(torch.cuda.OutOfMemoryError), pytest.warns(UserWarning):
        hopeless.upscale_network_input(image)
