"""Networks and their units: architectures and what a prunable layer is (``models``), checkpoints
(``checkpoint``), channels coupled across residual adds (``coupling``), the device (``device``).
The ground floor of ``core``: imports nothing else of it."""
from .checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint, load_model, save_checkpoint
from .device import pick_device
from .models import LayerInfo, ModelMeta, lenet5, model_totals, prunable_layers, vgg16, weights_digest

__all__ = ["DEFAULT_CHECKPOINT", "CheckpointError", "load_checkpoint", "load_model", "save_checkpoint",
           "pick_device", "LayerInfo", "ModelMeta", "lenet5", "vgg16", "model_totals", "prunable_layers",
           "weights_digest"]
