"""pytest fixtures and hooks of the suite (the helpers are in helpers.py and reference.py)."""
import numpy as np
import pytest


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
