"""Caffe's own deploy nets (`../shared/caffe_models`): every one builds at batch 1, runs
forward and backward on both engines, and the engines agree.

The weights are drawn here, not read from a .caffemodel (the folder holds definitions
only), scaled so that activations neither vanish nor overflow over 150 layers: He
initialisation for convolution and inner product weights, BatchNorm statistics of mean
0 and variance 1, and small Scale factors so that ResNet's residual sums stay moderate.
What the test checks does not depend on the values: the two engines must compute the
same function, on inputs and top diffs drawn from one seed.

How the engines are compared. Forward is continuous, so each engine runs the whole net
on its own and every blob must agree to 1e-4 of its largest magnitude. Backward is not:
a ReLU passes a gradient where its input is > 0, and a pre-activation of 4e-6 on one
engine is 0 on the other (their float32 sums run in different orders), so one element's
gradient flips, and every layer below inherits the difference. So backward is compared
layer by layer, in lock step: before each layer runs, the OpenCL net's blobs get the
numpy net's values, both run that layer, and its outputs must agree to the same 1e-4.
"""
import numpy as np
import pytest

from minicaffe import common, layer_type_list
from minicaffe.net import TEST, Net
from minicaffe.testing import zoo
from minicaffe.testing.zoo import draw_weights
from tests.zoo import CAFFE_MODELS, require_caffe_models

# The deploy nets of Caffe's models/ and examples/, plus ResNet and SqueezeNet.
DEPLOY_NETS = [
    "examples/mnist/lenet.prototxt",
    "examples/siamese/mnist_siamese.prototxt",
    "examples/cifar10/cifar10_quick.prototxt",
    "examples/cifar10/cifar10_full.prototxt",
    "examples/net_surgery/conv.prototxt",
    "examples/net_surgery/bvlc_caffenet_full_conv.prototxt",
    "models/bvlc_reference_caffenet/deploy.prototxt",
    "models/bvlc_alexnet/deploy.prototxt",
    "models/bvlc_reference_rcnn_ilsvrc13/deploy.prototxt",
    "models/finetune_flickr_style/deploy.prototxt",
    "models/bvlc_googlenet/deploy.prototxt",
    "models/squeezenet_v1.0/deploy.prototxt",
    "models/squeezenet_v1.1/deploy.prototxt",
    "models/resnet/ResNet-50-deploy.prototxt",
    "models/resnet/ResNet-101-deploy.prototxt",
    "models/resnet/ResNet-152-deploy.prototxt",
]


def at_batch_one(path):
    """The net at batch 1, with backward forced (a deploy net has no loss, so nothing would
    otherwise ask for gradients)."""
    param = zoo.at_batch_one(CAFFE_MODELS / path)
    param.force_backward = True
    return param


def build(param, mode, seed):
    """The net on one engine, with weights, inputs and output diffs drawn from `seed`."""
    with common.using_mode(mode):
        net = Net(param, TEST, source=str(param.name))
    rng = np.random.default_rng(seed)
    draw_weights(net, rng)
    for name in net.inputs:  # no real images are meant here: any input will do
        net.blobs[name].data[...] = rng.uniform(-1, 1, net.blobs[name].shape)
    for name in net.outputs:
        net.blobs[name].diff[...] = rng.uniform(-1, 1, net.blobs[name].shape)
    return net


def assert_close(ours, theirs, what):
    # Float32 sums taken in another order: agree to 1e-4 of the blob's largest magnitude.
    scale = max(float(np.abs(ours).max(initial=0)), 1e-30)
    assert np.all(np.isfinite(ours)), f"{what} is not finite"
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-4 * scale, err_msg=what)


def learned(net):
    """(name, blob) of every parameter a solver would learn (not BatchNorm's statistics)."""
    return [(f"{name}[{i}]", blob) for name, blobs in net.params.items()
            if net.layer_dict[name].type != "BatchNorm" for i, blob in enumerate(blobs)]


def test_every_layer_type_of_the_deploy_nets_exists():
    require_caffe_models()
    used = {layer.type for path in DEPLOY_NETS for layer in at_batch_one(path).layer}
    assert used - set(layer_type_list()) == set()


@pytest.mark.parametrize("path", DEPLOY_NETS)
def test_deploy_net_runs_forward_and_backward(path):
    require_caffe_models()
    net = build(at_batch_one(path), common.CPU, seed=1)
    with common.using_mode(common.CPU):
        net.forward()
        net.backward()
    for name, blob in net.blobs.items():
        assert np.all(np.isfinite(blob.data)) and np.all(np.isfinite(blob.diff)), name
    # Backward reached the input through every layer, and every learned parameter.
    assert np.abs(net.blobs[net.inputs[0]].diff).max() > 0
    assert [name for name, blob in learned(net) if not np.abs(blob.diff).max() > 0] == []


@pytest.mark.opencl
@pytest.mark.parametrize("path", DEPLOY_NETS)
def test_engines_agree_on_deploy_net(path):
    require_caffe_models()
    param = at_batch_one(path)
    cpu, gpu = build(param, common.CPU, seed=2), build(param, common.GPU, seed=2)
    # Forward, each engine on its own.
    with common.using_mode(common.CPU):
        cpu.forward()
    with common.using_mode(common.GPU):
        gpu.forward()
    for name, blob in cpu.blobs.items():
        assert_close(blob.cpu_data(), gpu.blobs[name].cpu_data(), f"{path}: blob {name!r} data")

    # Forward again and then backward, layer by layer from the same values.
    def run_layer(c, g, backward: bool):
        blobs = list(zip(c.bottom_vec + c.top_vec, g.bottom_vec + g.top_vec))
        for ours, theirs in blobs:
            theirs.mutable_cpu_data()[...] = ours.cpu_data()
            if backward:
                theirs.mutable_cpu_diff()[...] = ours.cpu_diff()
        for record, mode in ((c, common.CPU), (g, common.GPU)):
            with common.using_mode(mode):
                if backward:
                    record.layer.backward(record.top_vec, record.bottom_need_backward, record.bottom_vec)
                else:
                    record.layer.forward(record.bottom_vec, record.top_vec)

    pairs = list(zip(cpu.layer_records, gpu.layer_records))
    for c, g in pairs:
        run_layer(c, g, backward=False)
        for top, theirs in zip(c.top_vec, g.top_vec):
            assert_close(top.cpu_data(), theirs.cpu_data(), f"{path}: layer {c.name!r} forward, top {top.name!r}")
    for c, g in reversed(pairs):
        if not c.need_backward:
            continue
        run_layer(c, g, backward=True)
        for bottom, theirs, needed in zip(c.bottom_vec, g.bottom_vec, c.bottom_need_backward):
            if needed:
                assert_close(bottom.cpu_diff(), theirs.cpu_diff(),
                             f"{path}: layer {c.name!r} backward, bottom {bottom.name!r} diff")
        for i, (blob, theirs) in enumerate(zip(c.layer.blobs, g.layer.blobs)):
            assert_close(blob.cpu_diff(), theirs.cpu_diff(), f"{path}: layer {c.name!r} param {i} diff")
