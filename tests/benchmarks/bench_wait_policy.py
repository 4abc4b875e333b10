"""Benchmark: OpenMP's wait policy for small target fits, alone and two processes at once.
Not collected by pytest:

    python tests/benchmarks/bench_wait_policy.py

Every stage sets ``OMP_WAIT_POLICY=PASSIVE`` and libgomp's ``GOMP_SPINCOUNT=1000`` unless the
user set a policy (``pipeline/__init__.py``): idle OpenMP threads spin about 10 us, then sleep,
so stages that share cores (``dvc queue start -j 2``, parallel tune workers) do not burn each
other's time for long. The policy changes no result, only timing. Sleeping at once costs a
wake-up at every parallel region, and a small target fit enters thousands of them back to back;
spinning longer costs processes that share cores. This prints both, in wall seconds of one
workload (a single-network fit and a 5-member ensemble fit at the transfer stage's setting:
1 label per class, batch 8, 40 epochs), run in fresh processes (the policy is read when torch
loads):

- alone, with all cores, under the stages' default, fully passive (no spin), shorter and
  longer spins, ACTIVE (spin) and libgomp's default (spin about 3 ms, then sleep);
- two processes at the same time on the same cores, under each;
- one thread per process (no parallel regions; fewer threads: other numbers, see
  pipeline.threads).

Each case runs twice; the best is reported. On a shared machine the numbers are rough.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from pipeline import OPENMP_SPIN_COUNT  # the stages' default (this process loads no torch)

# torch loads first, so libgomp reads the policy this script chose before pipeline (imported by
# bench_throughput) sets its default
WORKLOAD = """
import sys, time
import torch
sys.path.insert(0, sys.argv[1])
from bench_throughput import (
    ensemble_fit, keep_freed_memory, pipeline_fit, quiet_libraries, settings, target_data
)

quiet_libraries()
keep_freed_memory()
_, xv, yv, subsets = target_data()
case = settings(40, 8)
ensemble_fit(subsets[:2], xv, yv, case)  # warm-up
t0 = time.perf_counter()
pipeline_fit(*subsets[0], xv, yv, case)
ensemble_fit(subsets[:5], xv, yv, case)
print(time.perf_counter() - t0)
"""

CASES = {  # name: environment changes (None removes the variable)
    f"stages' default (spin {OPENMP_SPIN_COUNT})": {
        "OMP_WAIT_POLICY": "PASSIVE",
        "GOMP_SPINCOUNT": OPENMP_SPIN_COUNT,
    },
    "PASSIVE, no spin": {"OMP_WAIT_POLICY": "PASSIVE"},
    "PASSIVE, spin 500": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "500"},
    "PASSIVE, spin 2000": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "2000"},
    "ACTIVE (spin)": {"OMP_WAIT_POLICY": "ACTIVE"},
    "libgomp's default": {"OMP_WAIT_POLICY": None},
    "1 thread": {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"},
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
        [sys.executable, "-c", WORKLOAD, str(Path(__file__).resolve().parent)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
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
    print(f"{'policy':<32}{'alone s':>9}{'vs default':>12}{'pair s':>9}{'vs default':>12}")
    for name, alone, pair in rows:
        print(
            f"{name:<32}{alone:>9.2f}{base_alone / alone:>11.2f}x{pair:>9.2f}"
            f"{base_pair / pair:>11.2f}x"
        )
    print(
        "(pair: the slower of two processes started together; > 1x is faster than the default; "
        f"{time.perf_counter() - t0:.0f} s in all)"
    )


if __name__ == "__main__":
    main()
