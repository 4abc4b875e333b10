"""Batched inference."""

from __future__ import annotations

import torch

from pipeline.models.grouped import GroupedNet

# Images per member in one inference pass on a CPU: a member's activations stay in a core's L2
# cache instead of the L3 that other processes share. Measured round-robin on 2 EPYC cores (a
# shared VM), 200 validation images through the 4-group CNN at 16x16, best of 25: one model
# 5.1-5.5 ms in batches of 64, 4.9-10.6 ms in one batch depending on the other tenants' load;
# 3 members as one wide network 6.8-7.7 ms vs 13.2-14.0 ms in batches of 170 (512 // 3, what fit
# used before); 10 members 25.2 ms vs 49.4 ms in one batch (tests/benchmarks/bench_ensemble.py).
CPU_BATCH = 64
GPU_BATCH = 1024  # GPUs want large batches: one kernel launch per layer for many images


def inference_batch(device: torch.device, members: int = 1) -> int:
    """Images per forward pass when ``members`` networks run side by side (a wide network)."""
    if device.type == "cpu":
        return CPU_BATCH
    return max(16, GPU_BATCH // members)


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
