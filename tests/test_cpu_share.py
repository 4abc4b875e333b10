"""Parallel workers on one machine share its cores instead of oversubscribing them."""

import os
import subprocess
import sys

import pytest
import torch

from pipeline import cpu_share


@pytest.fixture
def share(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_share, "folder", lambda: tmp_path)
    monkeypatch.setattr(cpu_share, "cores", lambda: 4)
    threads = torch.get_num_threads()
    yield tmp_path
    cpu_share.unregister()
    torch.set_num_threads(threads)


def test_unregistered_process_keeps_its_threads(share):
    before = torch.get_num_threads()
    assert cpu_share.rebalance() is None
    assert torch.get_num_threads() == before


def test_threads_follow_the_number_of_live_workers(share):
    cpu_share.register()
    assert cpu_share.rebalance() == 4 and torch.get_num_threads() == 4

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (share / str(other.pid)).touch()  # a second worker starts
        assert cpu_share.live_processes() == 2
        assert cpu_share.rebalance() == 2 and torch.get_num_threads() == 2
    finally:
        other.kill()
        other.wait()
    # its file outlives it (SIGKILL skips atexit): the dead worker is dropped and its file removed
    assert cpu_share.rebalance() == 4 and torch.get_num_threads() == 4
    assert sorted(p.name for p in share.iterdir()) == [str(os.getpid())]

    cpu_share.unregister()
    assert list(share.iterdir()) == []


def test_never_below_one_thread(share):
    cpu_share.register()
    for pid in (os.getppid(), 1, 2, 3, 4):  # more live processes than cores
        (share / str(pid)).touch()
    assert cpu_share.rebalance() == 1
