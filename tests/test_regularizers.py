"""Weight regularizers (fusednn.regularizers): penalties and their gradients against
float64 finite differences, Keras's names, and (de)serialization."""
import numpy as np
import pytest

from fusednn import regularizers
from gradcheck import numeric_gradient


def test_regularizer_penalties_and_gradients():
    w = np.random.default_rng(0).normal(size=(4, 3))
    reg = regularizers.L1L2(l1=0.3, l2=0.2)
    assert reg(w) == pytest.approx(0.3 * np.abs(w).sum() + 0.2 * np.sum(w ** 2), rel=1e-12)
    numeric = numeric_gradient(lambda: reg(w), w)
    # |w| is smooth away from 0 (these draws are not within eps of 0).
    np.testing.assert_allclose(reg.gradient(w), numeric, rtol=1e-6, atol=1e-8)
    assert regularizers.get("l2").get_config() == {"l2": 0.01}
    # Keras 3 maps "l1_l2" to the L1L2 class, whose factors default to 0.
    assert regularizers.get("l1_l2").get_config() == {"l1": 0.0, "l2": 0.0}


def test_regularizer_lookup_and_serialisation():
    reg = regularizers.L2(0.05)
    assert regularizers.get(regularizers.serialize(reg)).get_config() == reg.get_config()
    keras_style = regularizers.get({"class_name": "L1", "config": {"l1": 0.1}})
    assert keras_style.get_config() == {"l1": 0.1} and keras_style.l2 == 0.0
    assert regularizers.get(None) is None and regularizers.deserialize(None) is None
    assert regularizers.L1L2(l1=np.float32(0.5)).l1 == 0.5
    with pytest.raises(ValueError, match="unknown regularizer 'l3'"):
        regularizers.get("l3")
    with pytest.raises(ValueError, match="l2 factor"):
        regularizers.L1L2(l2=-1.0)
    with pytest.raises(ValueError, match="l1 factor"):
        regularizers.L1L2(l1=True)


def test_serialize_writes_keras_format_and_reads_the_bare_config():
    assert regularizers.get("L2").get_config() == {"l2": 0.01}  # any case
    saved = regularizers.serialize(regularizers.L1L2(l1=0.5, l2=0.25))
    assert saved == {"class_name": "L1L2", "config": {"l1": 0.5, "l2": 0.25}}
    assert regularizers.deserialize(saved).get_config() == {"l1": 0.5, "l2": 0.25}
    # the config alone, as fusednn saved regularizers before they moved onto Registry
    assert regularizers.deserialize({"l1": 0.5, "l2": 0.0}).get_config() == {"l1": 0.5, "l2": 0.0}
