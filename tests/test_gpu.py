"""GPU path: data resident on the device, bf16 autocast. Skipped without CUDA (CI has none)."""

import pytest
import torch

from pipeline.models.predict import predict_logits
from pipeline.models.small_cnn import small_cnn
from pipeline.transfer.fit import fit
from pipeline.transfer.settings import FitSettings

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_fit_on_the_gpu_keeps_data_on_device_and_learns():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(400) % 10
    x = torch.randn(400, 1, 16, 16, generator=g) + y.view(-1, 1, 1, 1) / 3  # learnable
    settings = FitSettings(epochs=5, batch_size=64, head_lr=0.05, backbone_lr=0.05, freeze_groups=1)
    result = fit(
        small_cnn(10),
        (x, y),
        (x[:100], y[:100]),
        settings,
        trainer_kwargs={
            "accelerator": "gpu",
            "precision": "bf16-mixed",
            "enable_progress_bar": False,
        },
    )
    assert next(result.model.parameters()).device.type == "cuda"
    assert result.cached_prefix
    assert result.best_val_acc > 0.3
    logits = predict_logits(result.model, x[:10].cuda())
    assert logits.device.type == "cuda" and torch.isfinite(logits.float()).all()
