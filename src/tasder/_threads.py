"""One torch thread for small, repeatable work (a context manager shared by tasd, zoo and nn).

Why: the tensors tasder works on between model calls — a layer's weight, a sample of 1,024
activation rows, a digits batch — are small, so torch's intra-op threads only add
synchronisation. On a 2-core machine shared with other work, two threads made the permutation
search 4–10× slower than one (each thread waits for the other to be scheduled). One thread also
fixes the order of every floating-point reduction, so a result cannot depend on the machine's
core count.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["single_thread"]


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread for the duration (the previous count is restored after)."""
    import torch

    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
