"""How closely onnxruntime reproduces minicaffe on the exported model-zoo deploy nets.

For each deploy net (tests/test_model_zoo.py's list) at batch 1, with seeded weights
(minicaffe.testing.zoo.draw_weights) and a uniform input in [-1, 1): minicaffe's numpy
forward, the export, and onnxruntime's forward (CPU, default graph optimisations). Prints
a Markdown table: per net, the outputs' max |difference| / max |value|, the worst such
ratio over every blob of the net, and the seconds taken by the export and by one
onnxruntime run (session creation included). The figures in docs/onnx.md come from here.

    python benchmarks/onnx_agreement.py [NET_PATH ...]
    python benchmarks/onnx_agreement.py --lenet lenet_iter_10000.caffemodel

With --lenet, the trained LeNet (examples/mnist/lenet.prototxt) is exported instead,
through `minicaffe export_onnx`'s own function, and both sides classify the 10,000
official MNIST test digits (data/mnist, scaled by 1/256 as in training): the accuracy
of each, the digits on which they disagree, and the largest difference in probability.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import onnxruntime as ort  # noqa: E402

from minicaffe.net import TEST, Net  # noqa: E402
from minicaffe.onnx_export import net_to_onnx  # noqa: E402
from minicaffe.testing import zoo  # noqa: E402
from tests.test_model_zoo import DEPLOY_NETS  # noqa: E402
from tests.zoo import CAFFE_MODELS  # noqa: E402


def ratio(theirs, ours) -> float:
    return float(np.abs(theirs - ours).max()) / max(float(np.abs(ours).max()), 1e-30)


def measure(path: str) -> str:
    net = Net(zoo.at_batch_one(CAFFE_MODELS / path), TEST)
    rng = np.random.default_rng(0)
    zoo.draw_weights(net, rng)
    feeds = {n: rng.uniform(-1, 1, net.blobs[n].shape).astype(np.float32) for n in net.inputs}
    net.forward(**feeds)
    names = list(net.blobs)
    start = time.perf_counter()
    model = net_to_onnx(net, outputs=names)
    exported = time.perf_counter() - start
    start = time.perf_counter()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = dict(zip(names, session.run(None, feeds)))
    ran = time.perf_counter() - start
    outputs = ", ".join(f"{name} {ratio(values[name], net.blobs[name].data):.1e}"
                        for name in net.outputs)
    worst = max(names, key=lambda n: ratio(values[n], net.blobs[n].data))
    return (f"| {path} | {outputs} | {ratio(values[worst], net.blobs[worst].data):.1e} ({worst}) "
            f"| {exported:.2f} | {ran:.2f} |")


def lenet(weights: str) -> None:
    import tempfile

    from minicaffe import protoio
    from minicaffe.io.idx import read_images, read_labels
    from minicaffe.onnx_export import export_onnx

    batch = 100
    images = read_images(ROOT / "data/mnist/t10k-images-idx3-ubyte.gz").astype(np.float32)
    images = (images * np.float32(0.00390625)).reshape(-1, batch, 1, 28, 28)
    labels = read_labels(ROOT / "data/mnist/t10k-labels-idx1-ubyte.gz")
    with tempfile.TemporaryDirectory() as tmp:
        param = protoio.read_net_param(ROOT / "examples/mnist/lenet.prototxt")
        param.layer[0].input_param.shape[0].dim[0] = batch
        model = Path(tmp) / "lenet.prototxt"
        protoio.write_text(model, param)
        export_onnx(model, weights, Path(tmp) / "lenet.onnx")
        session = ort.InferenceSession(str(Path(tmp) / "lenet.onnx"),
                                       providers=["CPUExecutionProvider"])
        net = Net(str(model), TEST, weights=weights)
    ours = np.concatenate([net.forward(data=x)["prob"].copy() for x in images])
    theirs = np.concatenate([session.run(["prob"], {"data": x})[0] for x in images])
    for who, prob in (("minicaffe", ours), ("onnxruntime", theirs)):
        print(f"{who}: test accuracy {np.mean(prob.argmax(1) == labels):.4f}")
    print(f"digits classified differently: {int(np.sum(ours.argmax(1) != theirs.argmax(1)))} "
          f"of {len(labels)}; max |prob difference| {np.abs(ours - theirs).max():.2e}")


def main(paths) -> None:
    print("| net | outputs: max abs diff / max abs value | worst blob | export s | onnxruntime s |")
    print("|---|---|---|---|---|")
    for path in paths or DEPLOY_NETS:
        print(measure(path), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--lenet"]:
        lenet(sys.argv[2])
    else:
        main(sys.argv[1:])
