"""Shared fixtures: the real data subsets and a fixed thread count for CPU tests."""
import os
from pathlib import Path

# OpenMP threads that spin while waiting for each other collapse when the cores are shared (a CI runner, a
# laptop doing other work): passive waiting measured 10 s vs 47 s for tests/test_augment.py at load ~15. It must be
# set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

# $SSLTUTOR_TEST_DATA, else ../shared/data beside the checkout, else the workplace's /work/shared/data (a clone made
# elsewhere, e.g. by CI in a temp folder, still finds the subsets).
_CANDIDATES = [Path(__file__).resolve().parents[2] / "shared" / "data", Path("/work/shared/data")]
SHARED_DATA = Path(os.environ["SSLTUTOR_TEST_DATA"]) if "SSLTUTOR_TEST_DATA" in os.environ else next(
    (p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0])


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder with the small real subsets (see shared/data/README.md). Fails, never skips, when missing."""
    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(
            f"real test data not found at {SHARED_DATA}: set SSLTUTOR_TEST_DATA to the folder holding "
            "intel_image/, cifar-10-batches-py/ and aptos2019/"
        )
    return SHARED_DATA
