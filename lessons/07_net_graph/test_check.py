"""Lesson 07 check: insert_splits and net outputs against minicaffe's Net on toy prototxts."""
import copy

import pytest
from google.protobuf import text_format

from minicaffe import net as mc_net
from minicaffe.proto import caffe_pb2

pytestmark = pytest.mark.lesson07

INPUT = 'layer { name: "data" type: "Input" top: "data" top: "label" ' \
        'input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }\n'


def ip(name, bottom, top, n=4):
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{top}" '
            f'inner_product_param {{ num_output: {n} }} }}\n')


def relu(name, blob):
    return f'layer {{ name: "{name}" type: "ReLU" bottom: "{blob}" top: "{blob}" }}\n'


NETS = {
    "chain": INPUT + ip("ip1", "data", "ip1") + relu("relu1", "ip1") + ip("ip2", "ip1", "ip2", 3)
             + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }\n',
    "fork": INPUT + ip("ip_a", "data", "a") + ip("ip_b", "data", "b")
            + 'layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" }\n',
    "in_place_then_fork": INPUT + ip("ip1", "data", "ip1") + relu("relu1", "ip1")
                          + ip("ip_a", "ip1", "a") + ip("ip_b", "ip1", "b"),
    "fork_then_in_place": INPUT + ip("ip1", "data", "ip1") + ip("ip_a", "ip1", "a")
                          + relu("relu1", "ip1") + ip("ip_b", "ip1", "b") + ip("ip_c", "ip1", "c"),
    "read_twice": INPUT + ip("ip1", "data", "ip1")
                  + 'layer { name: "square" type: "Eltwise" bottom: "ip1" bottom: "ip1" top: "sq" '
                    'eltwise_param { operation: PROD } }\n',
    "lenet_tail": INPUT + ip("ip2", "data", "ip2", 3)
                  + 'layer { name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy" }\n'
                  + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }\n',
}


def parse(text):
    return text_format.Parse(text, caffe_pb2.NetParameter())


def as_dicts(param):
    return [{"name": l.name, "type": l.type, "bottom": list(l.bottom), "top": list(l.top)}
            for l in param.layer]


@pytest.mark.parametrize("net", sorted(NETS))
def test_insert_splits_matches_minicaffe(lesson, net):
    param = parse(NETS[net])
    layers = as_dicts(param)
    before = copy.deepcopy(layers)
    result = [dict(layer, bottom=list(layer["bottom"]), top=list(layer["top"]))
              for layer in lesson.insert_splits(layers)]
    assert result == as_dicts(mc_net.insert_splits(param))
    assert layers == before, "insert_splits must not modify its input"


def test_fork_known_answer(lesson):
    layers = as_dicts(parse(NETS["fork"]))
    names = [(l["name"], l["bottom"], l["top"]) for l in lesson.insert_splits(layers)]
    assert names[1] == ("data_data_0_split", ["data"], ["data_data_0_split_0", "data_data_0_split_1"])
    assert names[2][1] == ["data_data_0_split_0"] and names[3][1] == ["data_data_0_split_1"]


# Caffe (and minicaffe) refuse to build "fork_then_in_place": after the split, the ReLU
# no longer works in place and its top would be a second producer of "ip1".
@pytest.mark.parametrize("net", sorted(set(NETS) - {"fork_then_in_place"}))
def test_outputs_match_a_real_net(lesson, net):
    param = parse(NETS[net])
    assert set(lesson.net_outputs(as_dicts(param))) == set(mc_net.Net(param, caffe_pb2.TEST).outputs)
