"""
Tests for vernemq, run with C{python -m twisted.trial tests}.

Hypothesis runs with a deterministic profile so CI does not flake.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "vernemq",
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
    max_examples=200,
)
settings.load_profile("vernemq")
