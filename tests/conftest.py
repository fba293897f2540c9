import numpy as np
import pytest

import fusednn as fd


def pytest_collection_modifyitems(config, items):
    if fd.has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU, CUDA kernels and CuPy (fd.has_cuda() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
