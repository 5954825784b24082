"""Shared test setup: the package on sys.path, hypothesis settings, the numerics contract."""

import sys
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

settings.register_profile(
    "libattention", deadline=None, max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("libattention")


def tolerance(expected, dtype):
    """The contract: 1e-5 + 1e-4·max|expected| for float32, 1e-10·(1 + max|expected|) for
    float64."""
    peak = float(np.max(np.abs(expected))) if np.size(expected) else 0.0
    if np.dtype(dtype) == np.float64:
        return 1e-10 + 1e-10 * peak
    return 1e-5 + 1e-4 * peak


def assert_close(got, expected, dtype=None, what="output"):
    """got matches expected within the contract tolerance of `dtype` (default: got's)."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != expected {expected.shape}"
    dtype = got.dtype if dtype is None else dtype
    error = float(np.max(np.abs(got.astype(np.float64) - expected))) if got.size else 0.0
    limit = tolerance(expected, dtype)
    assert error <= limit, f"{what}: max abs error {error:.3g} > tolerance {limit:.3g}"
