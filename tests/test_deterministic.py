"""fd.utils.set_deterministic: the switch reaches the kernels' flag and rejects what is
not a bool. That the CUDA gradients are bitwise equal under it, and differ without it
when the blocks run in another order, is tested in the emulator
(tests/cuda_emu/drivers/conv.cpp, determinism_case)."""
import numpy as np
import pytest

import fusednn as fd
from fusednn import _C


@pytest.fixture
def restore_default():
    yield
    fd.utils.set_deterministic(True)


def test_on_by_default():
    assert fd.utils.is_deterministic() is True


@pytest.mark.parametrize("enabled", [False, True, np.bool_(False)])
def test_switch_reaches_the_kernels_flag(restore_default, enabled):
    fd.utils.set_deterministic(enabled)
    assert _C.get_deterministic() is bool(enabled)
    assert fd.utils.is_deterministic() is bool(enabled)


@pytest.mark.parametrize("bad", [1, 0, "yes", None, 1.0])
def test_rejects_what_is_not_a_bool(restore_default, bad):
    fd.utils.set_deterministic(False)
    with pytest.raises(TypeError, match="set_deterministic: expected True or False"):
        fd.utils.set_deterministic(bad)
    assert fd.utils.is_deterministic() is False  # unchanged
