"""Benchmark: training throughput of the pipeline's Lightning path against a plain PyTorch loop
on the same model, data, optimizer and batch order. Not collected by pytest:

    python tests/benchmarks/bench_throughput.py

Both sides train and validate every epoch; samples/s counts training samples. Three settings: the
transfer stage's own (batch 8 on the labelled target subset, 40 epochs), the full target train
split (878 images, batch 8) and a pretrain-sized run (5000 images, batch 128). Runs interleaved,
best of three, in one process.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.data.images.sklearn_digits import make_sklearn_digits
from pipeline.data.images.synthetic_digits import render_digits
from pipeline.data.splits import label_budget
from pipeline.data.streams import Stream
from pipeline.models.small_cnn import small_cnn
from pipeline.transfer.fit import fit
from pipeline.transfer.settings import FitSettings
from stages._shell import quiet_libraries


def plain_loop(x, y, xv, yv, settings: FitSettings) -> float:
    torch.manual_seed(0)
    model = small_cnn(10)
    opt = torch.optim.SGD(
        model.parameters(),
        lr=settings.backbone_lr,
        momentum=0.9,
        nesterov=True,
        weight_decay=settings.weight_decay,
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.epochs)
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


def pipeline_fit(x, y, xv, yv, settings: FitSettings) -> float:
    torch.manual_seed(0)
    model = small_cnn(10)
    result = fit(
        model,
        (x, y),
        (xv, yv),
        settings,
        trainer_kwargs={"enable_progress_bar": False, "deterministic": True},
    )
    return result.seconds


def main() -> None:
    quiet_libraries()
    torch.set_num_threads(torch.get_num_threads())
    d = make_sklearn_digits(image_size=16, seed=0, test_fraction=0.4, val_per_class=20)
    tr, va = d.splits["train"], d.splits["val"]
    xv, yv = torch.from_numpy(va.x), torch.from_numpy(va.y)
    src = render_digits(5000, image_size=16, fonts=["DejaVuSans.ttf", "cmr10.ttf"], seed=0)
    cases = {  # name: (images, labels, epochs, batch size)
        "transfer stage (1 label/class, batch 8, 40 epochs)": (
            tr.x[label_budget(tr.y, 1, 0)],
            tr.y[label_budget(tr.y, 1, 0)],
            40,
            8,
        ),
        "full target train split (878 images, batch 8, 5 epochs)": (tr.x, tr.y, 5, 8),
        "pretrain-sized (5000 source images, batch 128, 2 epochs)": (src.x, src.y, 2, 128),
    }
    for name, (xs, ys, epochs, batch) in cases.items():
        x, y = torch.from_numpy(xs), torch.from_numpy(ys)
        index = np.arange(len(ys))
        settings = FitSettings(
            epochs=epochs, batch_size=batch, head_lr=0.01, backbone_lr=0.01, weight_decay=5e-4
        )
        pipeline_fit(x, y, xv, yv, settings)  # warm-up
        plain, ours = [], []
        for _ in range(3):
            plain.append(plain_loop(x, y, xv, yv, settings))
            ours.append(pipeline_fit(x, y, xv, yv, settings))
        n = len(index) * epochs
        print(
            f"{name}:\n  plain loop {n / min(plain):8.0f} samples/s   pipeline "
            f"{n / min(ours):8.0f} samples/s   ratio {min(plain) / min(ours):.2f}"
        )


if __name__ == "__main__":
    main()
