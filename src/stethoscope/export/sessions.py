"""An exported network opened in onnxruntime, checked against the manifest before it is used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from stethoscope.errors import ModelError
from stethoscope.export.manifest import checked_file


class Network:
    """One ONNX graph of an export: named float32 inputs in, its outputs as numpy arrays out."""

    def __init__(self, directory: Path, entry: Any, what: str, threads: int | None = None) -> None:
        self.path = checked_file(directory, entry, what)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / ...
            raise ModelError(f"{self.path}: not a usable ONNX graph ({exc})") from exc
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        want_in, want_out = entry.get("inputs"), entry.get("outputs")
        if want_in != self.inputs or want_out != self.outputs:
            raise ModelError(
                f"{self.path}: the graph takes {self.inputs} and gives {self.outputs}, the "
                f"manifest says {want_in} and {want_out}"
            )

    def run(self, *arrays: np.ndarray) -> list[np.ndarray]:
        feed = {
            name: np.ascontiguousarray(x, dtype=np.float32)
            for name, x in zip(self.inputs, arrays, strict=True)
        }
        return list(self.session.run(None, feed))
