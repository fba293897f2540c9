"""fusednn.registry.Registry, the one naming and (de)serialization mechanism, on its own and
as each family uses it."""
import json

import pytest

from fusednn import activations, initializers, layers, losses, metrics, optimizers
from fusednn.registry import Registry


class Shape:
    def __init__(self, size=1):
        self.size = size

    def get_config(self):
        return {"size": self.size}


def make_registry():
    registry = Registry("shape", base=Shape, module="shapes")

    @registry.register
    class Square(Shape):
        pass

    @registry.register(name="round_thing", aliases=("circle", "Disc"))
    class Circle(Shape):
        @classmethod
        def from_config(cls, config):
            return cls(size=10 * config["size"])  # marks that from_config was used

    return registry, Square, Circle


def test_names_and_aliases_match_in_any_case():
    registry, Square, Circle = make_registry()
    assert registry.lookup("square") is Square and registry.lookup("SQUARE") is Square
    assert registry.lookup("Round_Thing") is Circle and registry.lookup("disc") is Circle
    assert "CIRCLE" in registry and "triangle" not in registry
    assert registry.names() == ["circle", "disc", "round_thing", "square"]
    assert registry.entries() == {"Square": Square, "round_thing": Circle}


def test_serialize_writes_the_registered_name_and_deserialize_builds_only_entries():
    registry, Square, Circle = make_registry()
    saved = json.loads(json.dumps(registry.serialize(Circle(size=2))))
    assert saved == {"class_name": "round_thing", "config": {"size": 2}}
    assert registry.deserialize(saved).size == 20  # through Circle.from_config
    back = registry.deserialize({"class_name": "square", "config": {"size": 3}})
    assert type(back) is Square and back.size == 3  # no from_config: the class is called
    assert type(registry.deserialize("Disc")) is Circle  # a name alone: the defaults
    # Nothing is imported by name: a module path is just an unknown name.
    with pytest.raises(ValueError, match=r"unknown shape class 'os.system'; expected one of "
                                         r"Square, round_thing"):
        registry.deserialize({"class_name": "os.system", "config": {}})
    with pytest.raises(ValueError, match="'class_name' string and a 'config' dict"):
        registry.deserialize({"class_name": "Square"})


def test_get_follows_keras():
    registry, Square, _ = make_registry()
    square = Square()
    assert registry.get(square) is square
    assert type(registry.get("square")) is Square and registry.get("square") is not square
    assert registry.get({"class_name": "Square", "config": {"size": 4}}).size == 4
    with pytest.raises(ValueError, match=r"unknown shape 'squar'; expected one of circle, disc, "
                                         r"round_thing, square"):
        registry.get("squar")
    with pytest.raises(TypeError, match=r"shape must be a name, a serialized dict or a "
                                        r"shapes.Shape, got int 3"):
        registry.get(3)


def test_registration_errors():
    registry, Square, _ = make_registry()
    assert registry.register(Square) is Square  # the same class again is harmless

    class Other(Shape):
        pass

    with pytest.raises(ValueError, match="another shape is already registered as 'Square'"):
        registry.register(Other, name="Square")
    with pytest.raises(ValueError, match="the name 'disc' already means shape 'round_thing'"):
        registry.register(Other, aliases=("DISC",))
    assert "other" not in registry  # a refused registration leaves nothing behind
    with pytest.raises(TypeError, match="shapes.register: expected a Shape subclass"):
        registry.register(int)
    with pytest.raises(ValueError, match="Other is not a registered shape class, so it cannot "
                                         "be saved.*register it with shapes.register"):
        registry.serialize(Other())
    with pytest.raises(TypeError, match="shapes.serialize expects a shapes.Shape"):
        registry.serialize(object())


# Each family's registry: the Keras names it accepted before it moved onto Registry.
@pytest.mark.parametrize("family, name, expected", [
    (optimizers, "adam", optimizers.Adam), (optimizers, "RMSprop", optimizers.RMSprop),
    (losses, "mse", losses.MeanSquaredError), (losses, "bce", losses.BinaryCrossentropy),
    (losses, "huber", losses.Huber),
    (losses, "sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy),
    (initializers, "glorot_uniform", initializers.GlorotUniform),
    (initializers, "GlorotUniform", initializers.GlorotUniform),
    (initializers, "he_normal", initializers.HeNormal),
    (activations, "swish", activations.Silu), (activations, "hard_swish", activations.HardSilu),
    (activations, "ReLU", activations.ReLU),
])
def test_families_accept_keras_names(family, name, expected):
    assert type(family.get(name)) is expected
    saved = family.serialize(family.get(name))
    assert type(family.deserialize(saved)) is expected


def test_metric_names():
    # Keras's ALL_OBJECTS_DICT: the class under its name, its snake_case and short aliases.
    assert type(metrics.get("mae")) is metrics.MeanAbsoluteError
    assert type(metrics.get("MSE")) is metrics.MeanSquaredError
    assert metrics.serialize("MSE") == "MSE"
    saved = metrics.serialize(metrics.get("auc"))
    assert saved == {"class_name": "AUC", "config": metrics.AUC().get_config()}


def test_every_layer_class_is_registered_and_exported():
    # fusednn's own (other tests register classes of theirs, which are not exported)
    classes = {name: cls for name, cls in layers.registered_classes().items()
               if cls.__module__.startswith("fusednn.layers.")}
    assert len(classes) >= 35
    for name, cls in classes.items():
        assert getattr(layers, name) is cls and name in layers.__all__
