"""The data plane: references resolved, deployments run, the inference path."""

from modelbay.serving.inference import InferenceService, InferResult
from modelbay.serving.resolver import ModelResolver

__all__ = ["InferResult", "InferenceService", "ModelResolver"]
