"""Lesson 07: the net graph. Complete the two functions marked TODO.

A layer is a dict: {"name": str, "type": str, "bottom": [names], "top": [names]}, and a
net is the list of its layers in file order.

Check your work:   python -m pytest lessons/07_net_graph
Try it:            python lessons/07_net_graph/exercise.py
"""


def split_layer_name(layer: str, blob: str, top_index: int) -> str:
    return f"{blob}_{layer}_{top_index}_split"


def split_blob_name(layer: str, blob: str, top_index: int, split_index: int) -> str:
    return f"{blob}_{layer}_{top_index}_split_{split_index}"


def insert_splits(layers: list[dict]) -> list[dict]:
    """A new list of layers where every value with more than one reader has a Split.

    1. Walk the layers in order, remembering for each blob name its latest producer
       (layer index, top index); for each bottom, note which producer it reads and
       count the readers of each producer.
    2. Walk again, copying each layer (do not modify the input). A bottom whose
       producer has more than one reader is renamed to the next unused split top
       of that producer. Right after a layer, add a Split (type "Split", bottom
       [the blob], one top per reader) for each of its tops with several readers.
    """
    raise NotImplementedError("TODO: lesson 07, insert_splits")


def net_outputs(layers: list[dict]) -> set[str]:
    """The blob names still unread after the last layer (the net's outputs).

    Walking in order: a layer's bottoms are no longer available once read, its tops
    become available (an in-place top makes its name available again).
    """
    raise NotImplementedError("TODO: lesson 07, net_outputs")


if __name__ == "__main__":
    fork = [
        {"name": "data", "type": "Input", "bottom": [], "top": ["data"]},
        {"name": "ip_a", "type": "InnerProduct", "bottom": ["data"], "top": ["a"]},
        {"name": "ip_b", "type": "InnerProduct", "bottom": ["data"], "top": ["b"]},
    ]
    for layer in insert_splits(fork):
        print(f"{layer['name']:>20} ({layer['type']}): {layer['bottom']} -> {layer['top']}")
    print("outputs:", sorted(net_outputs(fork)), "(expected ['a', 'b'])")
