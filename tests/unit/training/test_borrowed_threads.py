"""The reference stage of a sweep runs on the cores of the jobs that wait for it (loky gives each of n_jobs
workers cores // n_jobs threads; a waiting job computes nothing), and gives them back afterwards."""
from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")

from llmpipe.training.ref_logprobs import borrowed_threads


@pytest.fixture
def one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def test_threads_follow_the_waiting_jobs_and_come_back(one_thread):
    cores = len(os.sched_getaffinity(0))
    waiting = [1]
    with borrowed_threads(lambda: waiting[0]) as borrow:
        borrow()
        assert torch.get_num_threads() == min(cores, 2)
        waiting[0] = 0   # the other job got the output and left: back to this job's own share
        borrow()
        assert torch.get_num_threads() == 1
        waiting[0] = 64   # never more than the cores this process may use
        borrow()
        assert torch.get_num_threads() == cores
    assert torch.get_num_threads() == 1


def test_without_a_count_nothing_changes(one_thread):
    with borrowed_threads(None) as borrow:
        borrow()
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 1
