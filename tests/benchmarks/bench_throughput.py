"""Benchmark: training throughput of the pipeline's Lightning path against a plain PyTorch loop
on the same model, data, optimizer and batch order. Not collected by pytest:

    python tests/benchmarks/bench_throughput.py

Both sides train and validate every epoch; samples/s counts training samples. Three settings: the
transfer stage's own (batch 8 on the labelled target subset, 40 epochs), the full target train
split (878 images, batch 8) and a pretrain-sized run (5000 images, batch 128). At the transfer
setting it also trains 10 paired seeds as one vectorised ensemble and counts every member's
samples. Beside the pipeline, a bare LightningModule (training and validation steps only, no
logger or callbacks) trains the same batches: the least any training through Lightning costs.
Runs interleaved, best of five (best of three on a GPU), in one process.

It runs under the stages' OpenMP wait policy (a short spin, then sleep, unless
``OMP_WAIT_POLICY`` is set); ``bench_wait_policy.py`` shows what that policy costs and saves.

With a CUDA device it then compares the pipeline (bf16-mixed, data resident on the GPU) against a
raw bf16 training loop with the data resident on the GPU, same model and batches, and reports the
ensemble's samples/s per member; without one it says so.
"""

from __future__ import annotations

import dataclasses
import time

import pipeline  # noqa: F401  first: OpenMP's wait policy as in the stages (before torch)

# isort: split

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.data.images.sklearn_digits import make_sklearn_digits
from pipeline.data.images.synthetic_digits import render_digits
from pipeline.data.splits import label_budget
from pipeline.data.streams import Stream
from pipeline.models.small_cnn import small_cnn
from pipeline.startup import keep_freed_memory
from pipeline.transfer.fit import Member, fit, fit_ensemble
from pipeline.transfer.settings import FitSettings
from stages._shell import quiet_libraries

REPEATS = 5  # interleaved; the best of each is reported (the VM's speed drifts)


def optimiser(params, settings: FitSettings) -> tuple:
    """The plain loop's SGD and cosine schedule, shared by the bare LightningModule."""
    opt = torch.optim.SGD(
        params,
        lr=settings.backbone_lr,
        momentum=0.9,
        nesterov=True,
        weight_decay=settings.weight_decay,
    )
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.epochs)


def plain_loop(x, y, xv, yv, settings: FitSettings) -> float:
    torch.manual_seed(0)
    model = small_cnn(10)
    opt, sched = optimiser(model.parameters(), settings)
    batches = Stream(x, y, settings.batch_size, shuffle=True, seed=0)
    t0 = time.perf_counter()
    for _ in range(settings.epochs):
        model.train()
        for xb, yb in batches:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
        sched.step()
        model.eval()
        with torch.no_grad():
            for xb, yb in Stream(xv, yv, 1024):
                (model(xb).argmax(1) == yb).float().mean()
    return time.perf_counter() - t0


def bare_lightning(x, y, xv, yv, settings: FitSettings) -> float:
    """The plain loop's work through the least Lightning can do: a LightningModule with only
    ``training_step``, ``validation_step`` and ``configure_optimizers`` (automatic
    optimisation), no logger, callbacks or checkpoints, the same batches. What any pipeline
    that trains through Lightning pays per step at least."""
    import lightning.pytorch as L

    class Bare(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = small_cnn(10)

        def training_step(self, batch, _):
            return F.cross_entropy(self.model(batch[0]), batch[1])

        def validation_step(self, batch, _):
            return (self.model(batch[0]).argmax(1) == batch[1]).float().mean()

        def configure_optimizers(self):
            opt, sched = optimiser(self.parameters(), settings)
            return [opt], [sched]

    torch.manual_seed(0)
    module = Bare()
    trainer = L.Trainer(
        max_epochs=settings.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    batches = Stream(x, y, settings.batch_size, shuffle=True, seed=0)
    t0 = time.perf_counter()
    trainer.fit(module, batches, Stream(xv, yv, 1024))
    return time.perf_counter() - t0


def pipeline_fit(x, y, xv, yv, settings: FitSettings, trainer: dict | None = None) -> float:
    torch.manual_seed(0)
    model = small_cnn(10)
    trainer = trainer or {"enable_progress_bar": False, "deterministic": True}
    t0 = time.perf_counter()  # the whole call: building the Trainer is the pipeline's cost too
    fit(model, (x, y), (xv, yv), settings, trainer_kwargs=trainer)
    return time.perf_counter() - t0


def ensemble_fit(subsets, xv, yv, settings: FitSettings, trainer: dict | None = None) -> float:
    """Seconds to train one member per (x, y) subset as one vectorised ensemble."""
    members = []
    for seed, (x, y) in enumerate(subsets):
        torch.manual_seed(seed)
        members.append(Member(small_cnn(10), (x, y), dataclasses.replace(settings, seed=seed)))
    trainer = trainer or {"enable_progress_bar": False, "deterministic": True}
    t0 = time.perf_counter()
    fit_ensemble(members, (xv, yv), trainer_kwargs=trainer)
    return time.perf_counter() - t0


def raw_gpu_loop(x, y, xv, yv, settings: FitSettings) -> float:
    """The fastest plain loop we know for resident data: whole-batch indexing, bf16 autocast."""
    torch.manual_seed(0)
    model = small_cnn(10).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=settings.backbone_lr, momentum=0.9, nesterov=True)
    batches = Stream(x, y, settings.batch_size, shuffle=True, seed=0)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(settings.epochs):
        model.train()
        for xb, yb in batches:
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            for xb, yb in Stream(xv, yv, 1024):
                (model(xb).argmax(1) == yb).float().mean()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def gpu(members: int = 10) -> None:
    if not torch.cuda.is_available():
        print("GPU: no CUDA device here; the raw bf16 loop vs pipeline comparison was skipped")
        return
    g = torch.Generator().manual_seed(0)
    y = torch.arange(50_000) % 10
    x = (torch.randn(50_000, 1, 16, 16, generator=g) + y.view(-1, 1, 1, 1) / 3).cuda()
    y = y.cuda()
    xv, yv = x[:2000], y[:2000]
    settings = FitSettings(epochs=3, batch_size=512, head_lr=0.05, backbone_lr=0.05)
    trainer = {"accelerator": "gpu", "precision": "bf16-mixed", "enable_progress_bar": False}
    pipeline_fit(x, y, xv, yv, settings, trainer)  # warm-up (cuDNN autotuning, allocator)
    raw, ours, ens = [], [], []
    for _ in range(3):
        raw.append(raw_gpu_loop(x, y, xv, yv, settings))
        ours.append(pipeline_fit(x, y, xv, yv, settings, trainer))
        ens.append(ensemble_fit([(x, y)] * members, xv, yv, settings, trainer))
    n = len(x) * settings.epochs
    print(
        f"GPU ({torch.cuda.get_device_name()}, bf16, 50k images 16x16, batch 512):\n"
        f"  raw loop {n / min(raw):9.0f} samples/s   pipeline {n / min(ours):9.0f} samples/s   "
        f"ratio {min(raw) / min(ours):.2f} (goal >= 0.9)\n"
        f"  {members}-member ensemble {n / min(ens):9.0f} samples/s per member, "
        f"{members * n / min(ens):9.0f} in all"
    )


def target_data() -> tuple:
    """The built-in target's train split, its validation tensors, and one labelled subset (1
    label per class) per seed 0..9: the transfer stage's setting."""
    d = make_sklearn_digits(image_size=16, seed=0, test_fraction=0.4, val_per_class=20)
    tr, va = d.splits["train"], d.splits["val"]
    subsets = [
        (torch.from_numpy(tr.x[r]), torch.from_numpy(tr.y[r]))
        for r in (label_budget(tr.y, 1, s) for s in range(10))
    ]
    return tr, torch.from_numpy(va.x), torch.from_numpy(va.y), subsets


def settings(epochs: int, batch: int) -> FitSettings:
    return FitSettings(
        epochs=epochs, batch_size=batch, head_lr=0.01, backbone_lr=0.01, weight_decay=5e-4
    )


def main() -> None:
    quiet_libraries()
    keep_freed_memory()  # as in every stage and fit; the plain loops run with it too
    torch.set_num_threads(torch.get_num_threads())
    tr, xv, yv, subsets = target_data()
    src = render_digits(5000, image_size=16, fonts=["DejaVuSans.ttf", "cmr10.ttf"], seed=0)
    one = label_budget(tr.y, 1, 0)
    cases = {  # name: (images, labels, epochs, batch size)
        "transfer stage (1 label/class, batch 8, 40 epochs)": (tr.x[one], tr.y[one], 40, 8),
        "full target train split (878 images, batch 8, 5 epochs)": (tr.x, tr.y, 5, 8),
        "pretrain-sized (5000 source images, batch 128, 2 epochs)": (src.x, src.y, 2, 128),
    }
    for i, (name, (xs, ys, epochs, batch)) in enumerate(cases.items()):
        x, y = torch.from_numpy(xs), torch.from_numpy(ys)
        index = np.arange(len(ys))
        case = settings(epochs, batch)
        pipeline_fit(x, y, xv, yv, case)  # warm-up
        bare_lightning(x, y, xv, yv, case)  # warm-up
        plain, ours, ens, bare = [], [], [], []
        for _ in range(REPEATS):
            plain.append(plain_loop(x, y, xv, yv, case))
            ours.append(pipeline_fit(x, y, xv, yv, case))
            bare.append(bare_lightning(x, y, xv, yv, case))
            if i == 0:
                ens.append(ensemble_fit(subsets, xv, yv, case))
        n = len(index) * epochs
        print(
            f"{name}:\n  plain loop {n / min(plain):8.0f} samples/s   pipeline "
            f"{n / min(ours):8.0f} samples/s   ratio {min(plain) / min(ours):.2f} (goal >= 1.0)"
            f"\n  a bare LightningModule {n / min(bare):8.0f} samples/s   ratio "
            f"{min(plain) / min(bare):.2f} (Lightning's own cost, nothing of the pipeline's)"
        )
        if ens:
            print(
                f"  10 paired seeds as one ensemble {10 * n / min(ens):8.0f} samples/s in all, "
                f"ratio {10 * min(plain) / min(ens):.2f} (goal >= 3)"
            )
    gpu()


if __name__ == "__main__":
    main()
