"""A Seldon MLServer inference runtime that serves an ONNX classifier through onnxruntime.

Distill's MLServer test and throughput measurement use it (docs/served-teachers.md). In a
model folder's model-settings.json:

    {"name": "teacher", "implementation": "mlserver_onnx_runtime.ONNXClassifier",
     "parameters": {"uri": "./teacher.onnx", "version": "1"}}

with this folder on PYTHONPATH. The model's metadata (one FP32 input, one output, batch axis
-1) is read from the ONNX graph, so model-settings.json need not declare it; the version is
listed in the metadata, as the answers are keyed by it.
"""
import numpy as np
import onnxruntime
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse, MetadataTensor
from mlserver.utils import get_model_uri


def _tensor(node):
    shape = [size if isinstance(size, int) else -1 for size in node.shape]
    return MetadataTensor(name=node.name, datatype="FP32", shape=shape)


class ONNXClassifier(MLModel):
    async def load(self) -> bool:
        path = await get_model_uri(self.settings)
        self._session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self.inputs = [_tensor(node) for node in self._session.get_inputs()]
        self.outputs = [_tensor(node) for node in self._session.get_outputs()]
        self.settings.versions = [self.version] if self.version else []
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        inputs = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        outputs = self._session.run(None, {self._input: inputs})
        return InferenceResponse(
            model_name=self.name, model_version=self.version,
            outputs=[NumpyCodec.encode_output(node.name, value)
                     for node, value in zip(self._session.get_outputs(), outputs)])
