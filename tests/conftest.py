"""Shared test settings.

Hypothesis deadlines are off: the first call of a numba kernel compiles it (seconds), and the
machines that run CI are shared and noisy. Example counts stay modest so the whole suite runs
in a few minutes on 2 cores; set HYPOTHESIS_PROFILE=thorough for a longer search.
"""

import os
import tempfile

import pytest
from hypothesis import HealthCheck, settings

# The demo keeps mapper searches in the hw result cache; tests (and the README blocks they run) use
# a fresh one of their own, never the user's ~/.cache/tasder/hw.
os.environ["TASDER_HW_CACHE"] = tempfile.mkdtemp(prefix="tasder-test-hw-cache-")

settings.register_profile(
    "default", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def numba_kernels() -> None:
    """Compile (or load from numba's disk cache) the serial TASD/mask kernels once per session.

    Every dtype width has its own specialisation, and on a cold cache each takes seconds to
    compile: without this fixture the first property test that draws a given dtype pays for it
    inside its own timing. Test modules that run the kernel request it (``pytestmark``).
    """
    import torch

    from tasder import compute_mask, decompose

    for dtype in (torch.float16, torch.float32, torch.float64):
        x = torch.ones(2, 8, dtype=dtype)
        decompose(x, "2:4")  # same-H kernel
        decompose(x, "K1(1:2)->K0(2:4)")  # general kernel
        compute_mask(x, "2:4")
        # short rows regrouped into spans: the outputs are strided views, another specialisation
        decompose(torch.ones(600, 8, dtype=dtype), "2:4")
