"""Batched inference."""

from __future__ import annotations

import torch

from pipeline.models.grouped import GroupedNet

# Images in one inference pass, shared by the members of a wide network. On CPUs, measured
# round-robin on 2 EPYC cores (tests/benchmarks/bench_ensemble.py, 200 validation images through
# the 4-group CNN at 16x16, channels-last, with pipeline.startup.keep_freed_memory): one model
# 2.3 ms in one batch of 200, 2.9 ms in batches of 64, 4.0 ms in batches of 32; 3 members as one
# wide network 7.2 ms in batches of 64, 7.6 ms in one batch; 10 members 25.4 ms in batches of
# 32, 27.4 ms in batches of 64, 28.4 ms in one batch. (Without keep_freed_memory, one batch had
# measured up to 2x slower than batches of 64: every large activation was page-faulted in.)
CPU_BATCH = 256
GPU_BATCH = 1024  # GPUs want large batches: one kernel launch per layer for many images
MIN_BATCH = 16


def inference_batch(device: torch.device, members: int = 1) -> int:
    """Images per forward pass when ``members`` networks run side by side (a wide network)."""
    return max(MIN_BATCH, (CPU_BATCH if device.type == "cpu" else GPU_BATCH) // members)


@torch.inference_mode()
def predict_logits(
    model: GroupedNet, x: torch.Tensor, batch_size: int | None = None, features: bool = False
) -> torch.Tensor:
    """Logits (or pooled features when ``features``) of ``model`` in eval mode, on x's device,
    in batches of ``batch_size`` images (default :func:`inference_batch`)."""
    batch_size = batch_size or inference_batch(x.device)
    was = model.training
    model.eval()
    fn = model.forward_features if features else model
    out = torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was)
    return out
