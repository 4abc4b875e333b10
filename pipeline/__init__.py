"""Graftlab: measure whether, how much and when transfer learning helps.

The library knows nothing of file layout or Hydra: functions take plain typed arguments and built
objects, and return results. The DVC stages in ``stages/`` wire it to ``params.yaml`` and
``outputs/``.
"""

import os

# OpenMP reads how its idle threads wait when torch loads it. Stages wait passively (sleep at
# once) so that several stage processes on the same cores stay cheap now that each uses a fixed
# thread count (see pipeline.threads), but libgomp (torch's OpenMP on Linux) first spins for
# GOMP_SPINCOUNT turns (1000: about 10 us by libgomp's own estimate), which its own setting takes
# over the policy's. Small target fits enter thousands of parallel regions back to back, and a
# wake-up from sleep cost each 40-60 us on 2 virtual cores: that short spin made them 1.5-1.7x
# faster alone, and two processes sharing the cores 0.73-0.79x as fast as fully passive ones
# (tests/benchmarks/bench_wait_policy.py). Other OpenMP runtimes read only the policy.
# A policy the user set wins, with that policy's own spin count; so does a spin count they set.
OPENMP_SPIN_COUNT = "1000"
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ.setdefault("GOMP_SPINCOUNT", OPENMP_SPIN_COUNT)

__version__ = "0.1.0"
