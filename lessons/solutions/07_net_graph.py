"""Lesson 07, reference solution: the net graph."""
from collections import Counter


def split_layer_name(layer: str, blob: str, top_index: int) -> str:
    return f"{blob}_{layer}_{top_index}_split"


def split_blob_name(layer: str, blob: str, top_index: int, split_index: int) -> str:
    return f"{blob}_{layer}_{top_index}_split_{split_index}"


def insert_splits(layers: list[dict]) -> list[dict]:
    producer = {}   # blob name -> (layer index, top index) of its latest producer
    source = {}     # (layer index, bottom index) -> the producer that bottom reads
    readers = Counter()
    for i, layer in enumerate(layers):
        for j, name in enumerate(layer["bottom"]):
            source[i, j] = producer[name]
            readers[producer[name]] += 1
        for j, name in enumerate(layer["top"]):
            producer[name] = (i, j)

    out, taken = [], Counter()
    for i, layer in enumerate(layers):
        new = dict(layer, bottom=list(layer["bottom"]), top=list(layer["top"]))
        for j, name in enumerate(layer["bottom"]):
            src = source[i, j]
            if readers[src] > 1:
                new["bottom"][j] = split_blob_name(layers[src[0]]["name"], name, src[1], taken[src])
                taken[src] += 1
        out.append(new)
        for j, name in enumerate(layer["top"]):
            if readers[i, j] > 1:
                out.append({"name": split_layer_name(layer["name"], name, j), "type": "Split",
                            "bottom": [name],
                            "top": [split_blob_name(layer["name"], name, j, k)
                                    for k in range(readers[i, j])]})
    return out


def net_outputs(layers: list[dict]) -> set[str]:
    available = set()
    for layer in layers:
        available.difference_update(layer["bottom"])
        available.update(layer["top"])
    return available
