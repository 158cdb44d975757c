"""The data plane: models loaded for serving and the inference path."""

from modelbay.serving.inference import InferenceService, InferResult
from modelbay.serving.served_models import LoadedModel, ServedModels

__all__ = ["InferResult", "InferenceService", "LoadedModel", "ServedModels"]
