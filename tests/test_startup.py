"""Process-wide settings of pipeline.startup, each checked in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="glibc's malloc only",
)

# Inference passes of the 4-group CNN over 200 images in chunks of 64, as validation runs them:
# prints the minor page faults of 10 passes after two warm-ups, then whether
# keep_freed_memory() reports the setting in effect.
_CHURN = """
import resource, sys, torch
from pipeline.models.small_cnn import small_cnn
from pipeline.startup import keep_freed_memory
on = keep_freed_memory() if sys.argv[1] == "keep" else None
torch.manual_seed(0)
model, x = small_cnn(10).eval(), torch.randn(200, 1, 16, 16)
def passes(n):
    with torch.inference_mode():
        for _ in range(n):
            for i in range(0, 200, 64):
                model(x[i : i + 64])
passes(2)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
passes(10)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, on, keep_freed_memory())
"""


def _churn(mode: str, **env: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _CHURN, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return out.stdout.split()


@glibc
def test_freed_tensor_memory_is_reused_instead_of_faulted_in_again():
    faults, on, again = _churn("keep")
    default, *_ = _churn("default")
    # glibc's default maps every activation of a few MB afresh: ~2,000 page faults a pass
    assert int(default) > 10_000
    assert on == again == "True"  # once per process, then the same answer
    assert int(faults) < 1_000


@glibc
@pytest.mark.parametrize(
    "env",
    [{"MALLOC_MMAP_THRESHOLD_": "131072"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}],
)
def test_a_users_own_malloc_settings_are_left_alone(env):
    faults, on, _ = _churn("keep", **env)
    assert on == "False"
    assert int(faults) > 10_000  # their setting, not ours, decides
