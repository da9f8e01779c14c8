"""Shared test settings.

Hypothesis deadlines are off: the first call of a numba kernel compiles it (seconds), and the
machines that run CI are shared and noisy. Example counts stay modest so the whole suite runs
in a few minutes on 2 cores; set HYPOTHESIS_PROFILE=thorough for a longer search.
"""

import os
import tempfile

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
