"""Fault injection: helpers that run a stage the way a user does and report what it left.

Every fault test asserts the same four things: the named error (one line, no traceback), the exit
status, the MLflow state of the stage's runs and the state of ``outputs/``. In-process runs go
through the real shell (:func:`stages._shell.run_stage`: config checks, sweeping, exit codes);
subprocesses are used where a signal or a SIGKILL must hit a real process.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import REPO

# A transfer stage small enough for a few seconds: two arms, one seed, two epochs.
SMALL_TRANSFER = ("transfer.run=[scratch,freeze_k]", "transfer.seeds=1", "transfer.epochs=2")


@dataclass
class Outcome:
    """How a stage run ended."""

    code: int
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error in stage")]

    def named(self, *parts: str, code: int = 2) -> str:
        """Assert one error line, no traceback, exit ``code``, and ``parts`` in the line."""
        assert self.code == code, self.err[-3000:]
        assert "Traceback" not in self.err, self.err[-3000:]
        assert len(self.error_lines) == 1, self.err[-3000:]
        line = self.error_lines[0]
        for part in parts:
            assert part in line, line
        return line


def run_in_process(stage: str, *overrides: str, capsys: pytest.CaptureFixture) -> Outcome:
    """``python -m stages.<stage> <overrides>`` in this process (cwd is the workspace)."""
    from stages._shell import run_stage

    module = importlib.import_module(f"stages.{stage}")
    capsys.readouterr()
    try:
        run_stage(stage, module.run, list(overrides))
    except SystemExit as exit_:
        code = exit_.code
    else:
        code = 0
    return Outcome(code, capsys.readouterr().err)


def stage_command(stage: str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", f"stages.{stage}", *overrides]


def stage_env() -> dict[str, str]:
    """This checkout's code and the session's MLflow store for a stage subprocess."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


def start(stage: str, *overrides: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        stage_command(stage, *overrides),
        cwd=cwd,
        env=stage_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_subprocess(stage: str, *overrides: str, cwd: Path) -> Outcome:
    proc = subprocess.run(
        stage_command(stage, *overrides), cwd=cwd, env=stage_env(), capture_output=True, text=True
    )
    return Outcome(proc.returncode, proc.stderr)


def runs(stage: str, since_ms: int) -> list:
    """MLflow runs of ``stage`` started at or after ``since_ms``, oldest first."""
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])  # the session's store
    exp = client.get_experiment_by_name("graftlab")
    if exp is None:
        return []
    query = f"tags.`graftlab.stage` = '{stage}' AND attributes.start_time >= {since_ms}"
    found = client.search_runs([exp.experiment_id], query, max_results=1000)
    return sorted(found, key=lambda r: r.info.start_time)


def statuses(stage: str, since_ms: int) -> list[str]:
    return [r.info.status for r in runs(stage, since_ms)]


def now_ms() -> int:
    return int(time.time() * 1000)


def temp_folders(root: Path) -> list[str]:
    """Temp or old folders a stage left in ``outputs/`` (the lock files are expected)."""
    outputs = root / "outputs"
    if not outputs.exists():
        return []
    return sorted(p.name for p in outputs.iterdir() if p.name.startswith(".") and p.is_dir())


def wait_until(condition, proc: subprocess.Popen, limit: float = 240.0) -> None:
    """Poll ``condition`` while ``proc`` runs; fail if it ends or ``limit`` seconds pass first."""
    deadline = time.monotonic() + limit
    while not condition():
        if proc.poll() is not None:
            tail = proc.stderr.read()[-2000:]
            pytest.fail(f"the stage ended first (rc {proc.returncode}): {tail}")
        if time.monotonic() > deadline:
            proc.send_signal(signal.SIGKILL)
            pytest.fail("the stage never got there")
        time.sleep(0.1)
