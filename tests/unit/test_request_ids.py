"""Request ids: unique within a process, across processes, and kept when a client sends them back."""

from __future__ import annotations

import os

import pytest

from lakebench.api.middleware import _GIVEN, RequestIds


def test_ids_are_unique_and_ordered_and_look_like_ids() -> None:
    ids = RequestIds()
    made = [ids() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert all(_GIVEN.match(i) for i in made)  # echoed back by a client, it is kept as it is
    assert [int(i.rsplit("-", 1)[1], 16) for i in made] == list(range(1, 10_001))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Python 3.12+: fork() beside threads (xdist's)
def test_a_forked_process_makes_ids_of_its_own() -> None:
    ids = RequestIds()
    parent = ids()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first id, then leave without running the parent's cleanup
        os.write(write, ids().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 200).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child and child.rsplit("-", 1)[0] != parent.rsplit("-", 1)[0]
    assert ids() != child
