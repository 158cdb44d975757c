"""Build the two bench models as TorchScript (random weights, fixed seed).

Run with the TorchServe venv's python:  TS_VENV/bin/python build_models.py OUT_DIR
Writes OUT_DIR/LeNet.pt and OUT_DIR/MLP.pt (torch.jit.script of bench/models.py's modules).
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models import cifar_module, mlp_module  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    models = {"LeNet": (cifar_module(), (2, 3, 32, 32)), "MLP": (mlp_module(), (2, 64))}
    for name, (module, shape) in models.items():
        scripted = torch.jit.script(module.eval())
        y = scripted(torch.zeros(*shape))
        assert tuple(y.shape) == (shape[0], 10), y.shape
        scripted.save(str(out / f"{name}.pt"))
        print(f"built {out / (name + '.pt')}")


if __name__ == "__main__":
    main()
