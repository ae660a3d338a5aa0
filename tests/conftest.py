"""pytest fixtures and hooks of the suite (the helpers are in helpers.py and reference.py)."""
import importlib.util

import numpy as np
import pytest

_HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.fixture(autouse=True)
def _fastnll_torch_on_small_inputs(request, monkeypatch):
    """fastnll.torch hands inputs under MIN_ELEMENTS elements to PyTorch's own functions; the
    tests' tensors are small, so they run fastnll's path unless marked small_goes_to_torch
    (the tests of that rule)."""
    if not _HAS_TORCH or request.node.get_closest_marker("small_goes_to_torch"):
        return
    import fastnll.torch
    monkeypatch.setattr(fastnll.torch, "MIN_ELEMENTS", 0)


@pytest.fixture
def torch():
    """PyTorch, or skip the test when it is not installed."""
    return pytest.importorskip("torch")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def pytest_report_header(config):
    import fastnll
    import fastnll._dispatch as dispatch
    return (f"fastnll {fastnll.__version__} from {fastnll.__file__}; kernels "
            f"{dispatch.level}, OpenMP {dispatch.kernels.built_with_openmp()}, "
            f"{fastnll.get_num_threads()} threads")
