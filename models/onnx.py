"""ONNX export of a model's encoders, each checked against torch with onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .content import ShowTensors

TOLERANCE = 1e-4  # max abs difference between onnxruntime and torch
OPSET = 17


class ShowEncoderExport(nn.Module):
    """`net.<method>(ShowTensors)` with positional tensor inputs (ShowTensors order), or
    `net.<method>(tensor)` when `show_tensors` is False: what torch.onnx.export traces."""

    def __init__(self, net: nn.Module, method: str = "forward", show_tensors: bool = True):
        super().__init__()
        self.net, self.method, self.show_tensors = net, method, show_tensors

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        args = (ShowTensors(*tensors),) if self.show_tensors else tensors
        return getattr(self.net, self.method)(*args)


def export_checked(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], names: list[str], path: Path
) -> Path:
    """Export `module` (CPU, eval mode) to `path` with a dynamic batch axis, traced on the
    first rows of `inputs`, then check onnxruntime against torch on all of them."""
    import onnxruntime as ort

    module = module.cpu().eval()
    sample = tuple(t[:8] for t in inputs)
    axes = {n: {0: "batch"} for n in [*names, "embedding"]}
    # traced with autograd on, so that nn.TransformerEncoder takes its exportable path
    torch.onnx.export(
        module, sample, str(path), input_names=names, output_names=["embedding"],
        dynamic_axes=axes, opset_version=OPSET, dynamo=False,
    )  # fmt: skip
    with torch.no_grad():
        expected = module(*inputs).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})[0]
    diff = float(np.abs(got - expected).max())
    if diff >= TOLERANCE:
        raise RuntimeError(f"ONNX export {path.name} differs from torch by {diff:.2e}")
    return path
