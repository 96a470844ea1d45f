"""`OnnxModel`: a shipped .onnx file opened once and checked against its model card.

The card (`<name>.card.json` next to `<name>.onnx`) names the input, the features in order and
the decision threshold chosen by cross-validation. A model whose card does not match the
feature module it runs with is refused when opened, not scored wrongly later.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from models import features

_LOGGER = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent
FALL_MODEL_PATH = MODELS_DIR / "fall_detector.onnx"


class ModelError(ValueError):
    """A model file or card that cannot be used with this code."""


def card_path(onnx_path: Path) -> Path:
    """`x/fall_detector.onnx` -> `x/fall_detector.card.json`."""
    return onnx_path.with_suffix("").with_suffix(".card.json")


class OnnxModel:
    """A binary classifier (class 1 = fall) run with onnxruntime on one thread."""

    def __init__(self, path: Path = FALL_MODEL_PATH, card: dict[str, Any] | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if card is None:
            try:
                card = json.loads(card_path(self.path).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ModelError(
                    f"{card_path(self.path)}: cannot read the model card: {exc}"
                ) from None
        self.card: dict[str, Any] = card
        names = tuple(card.get("features", ()))
        if names != features.FEATURE_NAMES:
            raise ModelError(
                f"{self.path.name}: card features {list(names)} differ from "
                f"models.features.FEATURE_NAMES {list(features.FEATURE_NAMES)}"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{self.path}: onnxruntime cannot load it: {exc}") from exc
        inputs = self._session.get_inputs()
        expected_input = card.get("input_name", "features")
        if len(inputs) != 1 or inputs[0].name != expected_input:
            raise ModelError(
                f"{self.path.name}: inputs {[i.name for i in inputs]}, card says {expected_input}"
            )
        width = inputs[0].shape[1] if len(inputs[0].shape) == 2 else None
        if isinstance(width, int) and width != features.N_FEATURES:
            raise ModelError(f"{self.path.name}: input width {width} != {features.N_FEATURES}")
        self.input_name = expected_input
        outputs = [o.name for o in self._session.get_outputs()]
        self._prob_output = "probabilities" if "probabilities" in outputs else outputs[-1]
        self.threshold = float(card.get("threshold", 0.5))

    def score(self, rows: np.ndarray) -> np.ndarray:
        """(k, N_FEATURES) feature rows -> (k,) probability of a fall."""
        x = np.ascontiguousarray(rows, dtype=np.float32).reshape(-1, features.N_FEATURES)
        if x.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        (probs,) = self._session.run([self._prob_output], {self.input_name: x})
        probs = np.asarray(probs, dtype=np.float32)
        return probs[:, 1] if probs.ndim == 2 else probs

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return self.score(rows)
