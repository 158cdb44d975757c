"""TorchServe handler: KServe V2 (Open Inference Protocol) JSON in and out, batch-aware.

TorchServe 0.12's built-in `kservev2` envelope (ts/torch_handler/request_envelope/kservev2.py)
only decodes the FIRST request of a batch (`_from_json` reads `body_list[0]` and returns one
response), so it cannot be used with batch_size > 1. This handler does the V2 decoding for
every request of the batch, stacks them into one tensor, runs the TorchScript model once
and answers one V2 response per request.
"""

import numpy as np
import torch
from ts.torch_handler.base_handler import BaseHandler

_DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


class V2Handler(BaseHandler):
    def initialize(self, context):
        torch.set_num_threads(
            1
        )  # one intra-op thread, as a modelbay replica (threads_per_replica=1)
        super().initialize(context)  # torch.jit.load of the serialized file
        self._name = context.manifest["model"]["modelName"]

    def preprocess(self, data):
        arrays, self._rows = [], []
        for row in data:
            body = row.get("body") or row.get("data")  # the worker json.loads application/json
            if isinstance(body, (bytes, bytearray)):
                import json

                body = json.loads(body)
            tensor = body["inputs"][0]
            array = np.asarray(tensor["data"], dtype=_DTYPES[tensor["datatype"]])
            array = array.reshape(tensor["shape"])
            arrays.append(array)
            self._rows.append(array.shape[0])
        return torch.from_numpy(np.concatenate(arrays) if len(arrays) > 1 else arrays[0])

    def inference(self, data, *args, **kwargs):
        with torch.inference_mode():
            return self.model(data)

    def postprocess(self, data):
        y = data.numpy()
        out, start = [], 0
        for n in self._rows:
            part = y[start : start + n]
            start += n
            out.append(
                {
                    "model_name": self._name,
                    "outputs": [
                        {
                            "name": "y",
                            "datatype": "FP32",
                            "shape": list(part.shape),
                            "data": part.ravel().tolist(),
                        }
                    ],
                }
            )
        return out
