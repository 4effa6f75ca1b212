"""C3AE in Keras 3. Importing `nets` registers the custom layers and losses, so that
`keras.models.load_model(path)` works on any model file this project writes."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from nets import layers, losses  # noqa: E402,F401  (registration)
from nets.model import build_c3ae, describe, load_c3ae  # noqa: E402

__all__ = ["build_c3ae", "describe", "load_c3ae", "layers", "losses"]
