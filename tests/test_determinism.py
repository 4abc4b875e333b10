"""Same commit, same seed, same numbers: whatever else runs on the machine."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from pipeline.models.weights import load_state_dict
from pipeline.threads import cores, fix_threads
from stages import tune
from tests.conftest import compose, write_params

CFG = ("tune.enabled=false", "transfer.run=[scratch,freeze_k]", "transfer.seeds=1")


def _transfer(folder: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    return subprocess.Popen(
        [sys.executable, "-m", "stages.transfer"],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for path in sorted((folder / "outputs/transfer/models").rglob("*.safetensors")):
        out |= {f"{path.parent.name}/{k}": v for k, v in load_state_dict(path).items()}
    return out


def test_a_stage_gives_identical_weights_alone_and_beside_another_stage(workspace):
    write_params(workspace, compose(*CFG))
    tune.run(compose(*CFG))
    twin = workspace.parent / (workspace.name + "-twin")
    shutil.copytree(workspace, twin)
    alone = _transfer(workspace)
    assert alone.wait() == 0, alone.stderr.read()
    first = _weights(workspace)
    both = [_transfer(workspace), _transfer(twin)]  # two stages on the same cores
    assert [p.wait() for p in both] == [0, 0], [p.stderr.read()[-500:] for p in both]
    for folder in (workspace, twin):
        again = _weights(folder)
        assert again.keys() == first.keys()
        assert all(torch.equal(again[k], first[k]) for k in first), folder


def test_thread_count_is_fixed_by_config_env_or_cores(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert fix_threads(None) == cores() == torch.get_num_threads()
        assert fix_threads(1) == 1 == torch.get_num_threads()
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert fix_threads(None) == 1
    finally:
        torch.set_num_threads(before)


def test_openmp_spins_briefly_then_sleeps_unless_the_user_chose_otherwise():
    code = (
        "import pipeline, os; "
        "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    cases = {
        "PASSIVE 1000": {},
        "ACTIVE None": {"OMP_WAIT_POLICY": "ACTIVE"},  # the policy's own spin count
        "PASSIVE None": {"OMP_WAIT_POLICY": "PASSIVE"},  # fully passive, as asked
        "PASSIVE 0": {"GOMP_SPINCOUNT": "0"},
    }
    for want, given in cases.items():
        run = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env={**env, **given}
        )
        assert run.stdout.strip() == want, (given, run.stderr)
