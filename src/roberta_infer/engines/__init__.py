"""The engines a bundle runs on, one session factory each: every ONNX Runtime and OpenVINO session is made here.

`make_session` (ONNX Runtime, `model.onnx`, in `ort`) and `openvino_session` (OpenVINO, `model.xml` + `model.bin`,
in `ov`) return a small session object with one surface: `run(src_tokens)` (int64 [batch, seq] → float32
[batch, classes]), `input_shape` / `output_shape` (ints for static dimensions, names for dynamic ones), `threads`, `provider`,
`engine`. `compile_openvino` is the one way an OpenVINO model is compiled, also for `compare`'s peer rows, which run
OpenVINO as its users do. Both check the graph's interface (`names`). OpenVINO is imported only when an OpenVINO
model is compiled.
"""

from .names import INPUT_NAME, OUTPUT_NAME, check_names
from .ort import PROVIDERS, OrtSession, make_session
from .ov import OPENVINO_HINTS, OpenVinoSession, compile_openvino, openvino_session

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "OPENVINO_HINTS", "PROVIDERS", "OpenVinoSession", "OrtSession", "check_names",
           "compile_openvino", "make_session", "openvino_session"]
