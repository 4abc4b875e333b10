"""A fixed CPU thread count, so the same commit and seed give the same numbers on a machine.

torch's CPU float reductions depend on the intra-op thread count: the same fit gives a different
validation loss with 1 and 2 threads (2.5493069 vs 2.5493071 after 40 epochs of the transfer
setting; measured for this module), and one point of accuracy per seed is the size of the whole
effect at 10 labels per class. So a stage never lets its thread count follow other processes: it
uses ``trainer.threads``, else ``OMP_NUM_THREADS``, else the cores it may run on.

Oversubscription (two stages on the same cores: ``dvc queue start -j 2``, parallel tune workers)
then stays cheap because OpenMP's idle threads sleep after a short spin (``OMP_WAIT_POLICY=PASSIVE``
with libgomp's ``GOMP_SPINCOUNT=1000``, set by :mod:`pipeline` before torch loads) instead of
spinning for milliseconds: two 2-thread fits on 2 cores took 24 s each with libgomp's default
and 1.7-1.8 s fully passive (0.9 s alone), with identical results. The short spin saves a
wake-up at most of a small fit's back-to-back parallel regions (1.5-1.7x faster alone than
fully passive) and costs a little when processes share cores (0.73-0.79x as fast as fully
passive); tests/benchmarks/bench_wait_policy.py measures each policy.
"""

from __future__ import annotations

import os

from pipeline.errors import ConfigError


def cores() -> int:
    """Cores this process may run on (the affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def fix_threads(threads: object = None) -> int:
    """Set torch's intra-op threads to ``threads`` (``trainer.threads``), else to
    ``OMP_NUM_THREADS``, else to :func:`cores`; return the count.

    Raises:
        ConfigError: ``threads`` or ``OMP_NUM_THREADS`` is not an integer >= 1.
    """
    import torch

    key, value = "trainer.threads", threads
    if value is None and os.environ.get("OMP_NUM_THREADS"):
        key, value = "OMP_NUM_THREADS", os.environ["OMP_NUM_THREADS"]
        value = int(value) if value.strip().isdigit() else value
    if value is None:
        value = cores()
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, value, "an integer >= 1, or null (all cores of this machine)")
    torch.set_num_threads(value)
    return value
