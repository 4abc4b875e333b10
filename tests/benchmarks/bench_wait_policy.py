"""Benchmark: OpenMP's wait policy for small target fits, alone and two processes at once.
Not collected by pytest:

    python tests/benchmarks/bench_wait_policy.py

Every stage sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it (``pipeline/__init__.py``):
idle OpenMP threads sleep instead of spinning, so stages that share cores (``dvc queue start
-j 2``, parallel tune workers) do not burn each other's time; the policy changes no result,
only timing. The price is a wake-up at every parallel region, and a small target fit enters
thousands of them. This prints that price, in wall seconds of one workload (a single-network
fit and a 5-member ensemble fit at the transfer stage's setting: 1 label per class, batch 8,
40 epochs), run in fresh processes (the policy is read when torch loads):

- alone, under PASSIVE, ACTIVE (spin) and libgomp's default (spin a while, then sleep),
  with all cores;
- two processes at the same time on the same cores, under each policy;
- one thread per process under PASSIVE (fewer threads: other numbers, see pipeline.threads).

Each case runs twice; the best is reported. On a shared machine the numbers are rough.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

# torch loads first, so libgomp reads the policy before pipeline sets its default
WORKLOAD = """
import time
import torch
from pipeline.data.images.sklearn_digits import make_sklearn_digits
from pipeline.data.splits import label_budget
from pipeline.models.small_cnn import small_cnn
from pipeline.startup import keep_freed_memory
from pipeline.transfer.fit import Member, fit_ensemble
from pipeline.transfer.settings import FitSettings
from stages._shell import quiet_libraries
import dataclasses

quiet_libraries()
keep_freed_memory()
d = make_sklearn_digits(image_size=16, seed=0, test_fraction=0.4, val_per_class=20)
tr, va = d.splits["train"], d.splits["val"]
val = (torch.from_numpy(va.x), torch.from_numpy(va.y))
s = FitSettings(epochs=40, batch_size=8, head_lr=0.01, backbone_lr=0.01, weight_decay=5e-4)
subsets = [
    (torch.from_numpy(tr.x[r]), torch.from_numpy(tr.y[r]))
    for r in (label_budget(tr.y, 1, seed) for seed in range(5))
]
kw = {"enable_progress_bar": False, "deterministic": True}

def run(n):
    members = []
    for seed in range(n):
        torch.manual_seed(seed)
        members.append(Member(small_cnn(10), subsets[seed], dataclasses.replace(s, seed=seed)))
    fit_ensemble(members, val, trainer_kwargs=kw)

run(2)  # warm-up
t0 = time.perf_counter()
run(1)
run(5)
print(time.perf_counter() - t0)
"""

CASES = {  # name: environment changes (None removes the variable)
    "PASSIVE (the stages' default)": {"OMP_WAIT_POLICY": "PASSIVE"},
    "ACTIVE (spin)": {"OMP_WAIT_POLICY": "ACTIVE"},
    "libgomp's default": {"OMP_WAIT_POLICY": None},
    "PASSIVE, 1 thread": {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"},
}


def _env(changes: dict[str, str | None]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _start(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WORKLOAD], env=env, stdout=subprocess.PIPE, text=True
    )


def _seconds(procs: list[subprocess.Popen]) -> list[float]:
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"workload failed with exit {p.returncode}")
        out.append(float(stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    t0 = time.perf_counter()
    rows = []
    for name, changes in CASES.items():
        env = _env(changes)
        alone = min(_seconds([_start(env)])[0] for _ in range(2))
        pair = min(max(_seconds([_start(env), _start(env)])) for _ in range(2))
        rows.append((name, alone, pair))
    base_alone, base_pair = rows[0][1], rows[0][2]
    print(f"{'policy':<32}{'alone s':>9}{'vs PASSIVE':>12}{'pair s':>9}{'vs PASSIVE':>12}")
    for name, alone, pair in rows:
        print(
            f"{name:<32}{alone:>9.2f}{base_alone / alone:>11.2f}x{pair:>9.2f}"
            f"{base_pair / pair:>11.2f}x"
        )
    print(
        "(pair: the slower of two processes started together; >1x is faster than PASSIVE; "
        f"{time.perf_counter() - t0:.0f} s in all)"
    )


if __name__ == "__main__":
    main()
