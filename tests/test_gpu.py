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


def test_an_ensemble_on_the_gpu_trains_each_member_like_alone():
    from pipeline.transfer.fit import Member, fit_ensemble

    g = torch.Generator().manual_seed(0)
    y = torch.arange(400) % 10
    x = torch.randn(400, 1, 16, 16, generator=g) + y.view(-1, 1, 1, 1) / 3
    trainer = {"accelerator": "gpu", "precision": "32-true", "enable_progress_bar": False}

    def member(seed):
        torch.manual_seed(seed)
        settings = FitSettings(
            epochs=3, batch_size=64, head_lr=0.05, backbone_lr=0.05, freeze_groups=1, seed=seed
        )
        return Member(small_cnn(10), (x, y), settings)

    alone = [
        fit_ensemble([member(s)], (x[:100], y[:100]), trainer_kwargs=trainer)[0] for s in (0, 1)
    ]
    together = fit_ensemble([member(0), member(1)], (x[:100], y[:100]), trainer_kwargs=trainer)
    for a, b in zip(alone, together, strict=True):
        assert next(b.model.parameters()).device.type == "cuda"
        assert a.best_epoch == b.best_epoch
        torch.testing.assert_close(
            [h["val/loss"] for h in b.history],
            [h["val/loss"] for h in a.history],
            rtol=1e-3,
            atol=1e-4,
        )
