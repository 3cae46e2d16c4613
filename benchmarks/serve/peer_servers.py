"""The serving peers, on our bundle: Triton's dynamic batcher (PyTriton) and Ray Serve's `@serve.batch`.

Runs in the peers' venv (`peers_venv.sh`), with our src/ on PYTHONPATH, so each peer's model call is exactly ours:
`load_bundle(BUNDLE, threads=T)` and `predict` (tokenise, length-aware batches, pad, ONNX Runtime, softmax) on the
texts its batcher gathered. Both answer the Open Inference Protocol's infer request (KServe v2, HTTP/JSON) at
/v2/models/roberta/infer: input `text` BYTES [N, 1] → outputs label BYTES, score FP32, logits FP32 [N, C], as
`roberta-infer serve` does, so one client drives all three the same way.
    python peer_servers.py triton --model BUNDLE --port P [--threads T] [--max-batch-size 32] [--delays-us 100,1000]
                              [--instances 1,2]
    python peer_servers.py ray    --model BUNDLE --port P [--threads T] [--max-batch-size 32] [--wait-ms 5]
Triton binds one model per (queue delay, instance count): "roberta-<delay>us-<n>i", each instance a call of the one
ONNX Runtime session (as `serve --parallel-calls n`); all idle but the one being measured.
A ready server prints "READY" on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import sysconfig

import numpy as np

from roberta_infer.bundle import load_bundle
from roberta_infer.predict import predict

NAME = "roberta"


def classifier(args):
    model = load_bundle(args.model, threads=args.threads, spin=False)  # as `serve` loads it
    predict(model, ["warm up the session ."] * args.max_batch_size, batch_size=args.max_batch_size)
    return model


def run_triton(args) -> None:
    """PyTriton's bundled tritonserver; Python inference callables on one session, one model per configuration."""
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    # The Python backend stub PyTriton ships links libpython3.X.so from the loader's path (the system's, e.g. Debian's
    # 3.11.2) but imports this venv's standard library; a mismatch fails the model's start (3.11.7's
    # multiprocessing calls RLock._recursion_count, which 3.11.2's _thread lacks). This interpreter's own libpython first.
    libdir = sysconfig.get_config_var("LIBDIR")
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH")) if p)
    model = classifier(args)

    @batch
    def infer(text: np.ndarray) -> dict[str, np.ndarray]:  # text: object [B, 1] of bytes
        results = predict(model, [t[0].decode("utf-8") for t in text], batch_size=args.max_batch_size)
        return {"label": np.array([[r["label"].encode()] for r in results], dtype=object),
                "score": np.array([[r["score"]] for r in results], dtype=np.float32),
                "logits": np.array([r["logits"] for r in results], dtype=np.float32)}

    config = TritonConfig(http_address="127.0.0.1", http_port=args.port, grpc_address="127.0.0.1",
                          grpc_port=args.port + 1, metrics_port=args.port + 2, allow_metrics=False, log_verbose=0)
    with Triton(config=config) as triton:
        for delay, instances in ((d, n) for n in args.instances for d in args.delays_us):
            triton.bind(model_name=f"{NAME}-{delay}us-{instances}i", infer_func=[infer] * instances,
                        inputs=[Tensor(name="text", dtype=bytes, shape=(1,))],
                        outputs=[Tensor(name="label", dtype=bytes, shape=(1,)),
                                 Tensor(name="score", dtype=np.float32, shape=(1,)),
                                 Tensor(name="logits", dtype=np.float32, shape=(-1,))],
                        config=ModelConfig(max_batch_size=args.max_batch_size,
                                           batcher=DynamicBatcher(max_queue_delay_microseconds=delay)),
                        strict=True)
        print("READY", flush=True)
        triton.serve()


def run_ray(args) -> None:
    """One Ray Serve replica whose `@serve.batch` method runs the model on the texts of concurrent requests."""
    import ray
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    @serve.deployment(max_ongoing_requests=1024)
    class Roberta:
        def __init__(self):
            self.model = classifier(args)

        @serve.batch(max_batch_size=args.max_batch_size, batch_wait_timeout_s=args.wait_ms / 1000)
        async def classify(self, texts: list[str]) -> list[dict]:
            return predict(self.model, texts, batch_size=args.max_batch_size)

        async def __call__(self, request: Request) -> JSONResponse:
            tensor = (await request.json())["inputs"][0]
            texts = [t[0] if isinstance(t, list) else t for t in tensor["data"]]
            results = await asyncio.gather(*(self.classify(t) for t in texts))
            n = len(results)
            return JSONResponse({"model_name": NAME, "outputs": [
                {"name": "label", "datatype": "BYTES", "shape": [n, 1], "data": [r["label"] for r in results]},
                {"name": "score", "datatype": "FP32", "shape": [n, 1], "data": [r["score"] for r in results]},
                {"name": "logits", "datatype": "FP32", "shape": [n, len(results[0]["logits"])],
                 "data": [x for r in results for x in r["logits"]]}]})

    # Ray starts its workers at nice 15 (raylet's worker_niceness) unless told otherwise: the replica would then lose
    # the cores to any other process here, while our server and Triton run at the default priority. Same for all.
    os.environ["RAY_worker_niceness"] = "0"
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(Roberta.bind(), name=NAME, route_prefix=f"/v2/models/{NAME}/infer")
    print("READY", flush=True)
    try:
        asyncio.run(asyncio.Event().wait())
    finally:
        serve.shutdown()
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("peer", choices=("triton", "ray"))
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--delays-us", type=lambda s: [int(x) for x in s.split(",")], default=[100])
    parser.add_argument("--instances", type=lambda s: [int(x) for x in s.split(",")], default=[1])
    parser.add_argument("--wait-ms", type=float, default=5.0)
    args = parser.parse_args()
    {"triton": run_triton, "ray": run_ray}[args.peer](args)


if __name__ == "__main__":
    sys.exit(main())
