"""Benchmark: what each stage pays before it does any work, and a no-op ``dvc repro``. Not
collected by pytest; run from the repository root (after ``dvc repro``, for the no-op timing):

    python tests/benchmarks/bench_startup.py

Each import is timed in a fresh interpreter (best of three): the libraries, then every stage
module, then ``python -m stages.tune tune.enabled=false`` end to end (a stage that does not train
must not load Lightning, Optuna or MLflow), then ``dvc repro`` with nothing to do.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

STAGES = ("prepare", "pretrain", "tune", "transfer", "evaluate")
LIBRARIES = ("torch", "mlflow", "optuna", "lightning.pytorch")


def seconds(code: str) -> float:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.split()[-1])


def best(fn, repeats: int = 3) -> float:
    return min(fn() for _ in range(repeats))


def wall(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    return time.perf_counter() - t0, (out.stdout + out.stderr).strip().splitlines()[-1:]


def main() -> None:
    print("import time in a fresh interpreter (best of 3):")
    for name in LIBRARIES:
        print(f"  {name:<22} {best(lambda n=name: seconds(f'import {n}')):5.2f} s")
    for stage in STAGES:
        code = (
            f"import sys, stages.{stage}; heavy = sorted({{m.split('.')[0] for m in sys.modules}}"
        )
        code += " & {'lightning', 'optuna', 'mlflow'})"
        print(f"  stages.{stage:<15} {best(lambda c=code: seconds(c)):5.2f} s")
    with tempfile.TemporaryDirectory(prefix="graftlab-bench-") as scratch:  # removed after
        argv = ["tune", "tune.enabled=false", f"paths.tune={scratch}/tune"]
        probe = f"import sys; sys.argv = {argv}; import stages.tune; stages.tune.main()"
        took = best(lambda: seconds(probe))
    print(f"  tune with tune.enabled=false, end to end: {took:5.2f} s")
    noop, last = wall(["dvc", "repro"])
    print(f"no-op dvc repro: {noop:5.2f} s (goal < 2 s)   {' '.join(last)}")


if __name__ == "__main__":
    main()
