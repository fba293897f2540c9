"""Exporting fusednn models to other formats: `fusednn.export.onnx(model, path)`, or
`model.export(path, format="onnx")` (Keras 3's name), which calls export_model.

The `onnx` package (pip install "fusednn[onnx]") is imported only when exporting.
"""
from .onnx_model import DEFAULT_OPSET, MIN_OPSET, onnx

_FORMATS = {"onnx": onnx}


def export_model(model, filepath, format="onnx", **options) -> None:
    """Writes `model` to `filepath` in `format` ("onnx"), passing `options` on."""
    exporter = _FORMATS.get(format)
    if exporter is None:
        raise ValueError(f"export: unknown format {format!r}; expected one of "
                         f"{', '.join(_FORMATS)}")
    exporter(model, filepath, **options)


__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "export_model", "onnx"]
