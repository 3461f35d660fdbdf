"""Caffe's own deploy nets (`../shared/caffe_models`): every one builds at batch 1, runs
forward and backward on both engines, and the engines agree.

The weights are drawn here, not read from a .caffemodel (the folder holds definitions
only), scaled so that activations neither vanish nor overflow over 150 layers: He
initialisation for convolution and inner product weights, and BatchNorm statistics of
mean 0 and variance 1. What the test checks does not depend on the values: the two
engines must compute the same function, on inputs and top diffs drawn from one seed.
"""
import numpy as np
import pytest

from minicaffe import common, layer_type_list, protoio
from minicaffe.net import TEST, Net
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
    """The net's definition with every input's first dimension set to 1, and backward forced
    (a deploy net has no loss, so nothing would otherwise ask for gradients)."""
    param = protoio.read_net_param(CAFFE_MODELS / path)
    for shape in param.input_shape:
        shape.dim[0] = 1
    if param.input_dim:
        param.input_dim[0] = 1
    for layer in param.layer:
        for shape in layer.input_param.shape:
            shape.dim[0] = 1
    param.force_backward = True
    return param


def draw_weights(net, rng):
    for name, blobs in net.params.items():
        kind = net.layer_dict[name].type
        if kind == "BatchNorm":  # mean 0, variance 1, and the moving-average factor 1
            blobs[0].data[...], blobs[1].data[...], blobs[2].data[...] = 0, 1, 1
            continue
        for i, blob in enumerate(blobs):
            if i == 0 and blob.num_axes > 1:  # He: keeps the variance through ReLUs
                fan_in = blob.count // blob.shape[0]
                if kind == "Deconvolution":
                    fan_in = blob.count // blob.shape[1]
                blob.data[...] = rng.normal(0, np.sqrt(2 / fan_in), blob.shape)
            elif kind == "Scale" and i == 0:
                blob.data[...] = rng.uniform(0.5, 1.0, blob.shape)
            else:
                blob.data[...] = rng.uniform(-0.1, 0.1, blob.shape)


def run(param, mode, seed):
    with common.using_mode(mode):
        net = Net(param, TEST, source=str(param.name))
        rng = np.random.default_rng(seed)
        draw_weights(net, rng)
        for name in net.inputs:  # no real images are meant here: any input will do
            net.blobs[name].data[...] = rng.uniform(-1, 1, net.blobs[name].shape)
        net.forward()
        for name in net.outputs:
            net.blobs[name].diff[...] = rng.uniform(-1, 1, net.blobs[name].shape)
        net.backward()
        blobs = {n: (b.cpu_data().copy(), b.cpu_diff().copy()) for n, b in net.blobs.items()}
        params = {f"{n}[{i}]": p.cpu_diff().copy() for n, ps in net.params.items() for i, p in enumerate(ps)}
        return blobs, params


def assert_close(ours, theirs, what):
    # Float32 sums taken in another order: agree to 1e-4 of the blob's largest magnitude.
    scale = max(float(np.abs(ours).max(initial=0)), 1e-30)
    assert np.all(np.isfinite(ours)), f"{what} is not finite"
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-4 * scale, err_msg=what)


def test_every_layer_type_of_the_deploy_nets_exists():
    require_caffe_models()
    used = {layer.type for path in DEPLOY_NETS for layer in at_batch_one(path).layer}
    assert used - set(layer_type_list()) == set()


@pytest.mark.parametrize("path", DEPLOY_NETS)
def test_deploy_net_runs_forward_and_backward(path):
    require_caffe_models()
    blobs, params = run(at_batch_one(path), common.CPU, seed=1)
    for name, (data, diff) in blobs.items():
        assert np.all(np.isfinite(data)) and np.all(np.isfinite(diff)), name
    # Backward reached the input through every layer.
    first_input = next(iter(b for b in blobs if b in ("data", "data_0")), None) or next(iter(blobs))
    assert np.abs(blobs[first_input][1]).max() > 0
    assert all(np.abs(diff).max() > 0 for diff in params.values())


@pytest.mark.opencl
@pytest.mark.parametrize("path", DEPLOY_NETS)
def test_engines_agree_on_deploy_net(path):
    require_caffe_models()
    param = at_batch_one(path)
    cpu_blobs, cpu_params = run(param, common.CPU, seed=2)
    gpu_blobs, gpu_params = run(param, common.GPU, seed=2)
    for name, (data, diff) in cpu_blobs.items():
        assert_close(data, gpu_blobs[name][0], f"{path}: blob {name!r} data")
        assert_close(diff, gpu_blobs[name][1], f"{path}: blob {name!r} diff")
    for name, diff in cpu_params.items():
        assert_close(diff, gpu_params[name], f"{path}: param {name} diff")
