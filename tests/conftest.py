"""Test configuration: float64 on (an edge, as the design asks), 1 CPU device per core."""

import os
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("BAYES_ISING_JAX_CACHE", "off")  # hermetic: test_cli checks the cache

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)

ROOT = Path(__file__).resolve().parents[1]
RETINA = ROOT.parent / "shared" / "data" / "retina15.mat"


@pytest.fixture(scope="session")
def retina_path():
    """Path of the real retina recording, or skip with a clear message when absent."""
    if not RETINA.exists():
        pytest.skip(f"real data file not present: {RETINA} (see ../shared/data/README.md)")
    return RETINA
