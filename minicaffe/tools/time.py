"""`minicaffe time`: how long each layer takes, forward and backward (Caffe's `caffe time`).

The loop is Caffe's: build the net, run one untimed forward and backward (so that
buffers are allocated and kernels compiled), then `iterations` passes, timing every
layer's Forward in order and every layer's Backward in reverse order. There is no
solver: parameter diffs accumulate and nothing is updated, so the net's inputs and
weights stay as they were and every pass does the same work.

On the OpenCL engine a kernel launch returns before the kernel has run, so the clock
would time launches, not work. `_clock` finishes the device queue before each
reading: each layer is charged with the kernels it launched. (Caffe's GPU timer uses
CUDA events instead, which measure the same thing.) The output is Caffe's:

    Average time per layer:
         conv1\tforward: 1.23 ms.
         conv1\tbackward: 2.34 ms.
    ...
    Average Forward pass: 10.1 ms.
    Average Backward pass: 20.2 ms.
    Average Forward-Backward: 30.4 ms.
    Total Time: 1520 ms.
"""
from __future__ import annotations

import logging
import time as clock

from minicaffe import common
from minicaffe.log import format_number as fmt
from minicaffe.net import TEST, TRAIN, Net

logger = logging.getLogger("minicaffe.caffe")


def _clock() -> float:
    """Seconds, read only after the device has finished what was launched."""
    if common.mode() == common.GPU:
        from minicaffe import opencl
        opencl.finish()
    return clock.perf_counter()


def time_net(model, iterations: int = 50, phase: str = "TRAIN", level: int = 0,
             stages=()) -> dict:
    """Time `iterations` forward-backward passes of `model`, logging Caffe's report.

    Returns the averages in ms: {"forward": [per layer], "backward": [per layer],
    "forward_pass", "backward_pass", "forward_backward", "total"} (for tests and scripts).
    """
    net = Net(model, TRAIN if phase == "TRAIN" else TEST, level=level, stages=stages)
    # A clean forward and backward first: allocation and kernel builds are not timed.
    logger.info("Performing Forward")
    logger.info("Initial loss: %s", fmt(net.forward_loss()))
    logger.info("Performing Backward")
    net.backward_all()

    records = net.layer_records
    logger.info("*** Benchmark begins ***")
    logger.info("Testing for %d iterations.", iterations)
    forward_per_layer = [0.0] * len(records)
    backward_per_layer = [0.0] * len(records)
    forward_time = backward_time = 0.0
    total_start = _clock()
    for j in range(iterations):
        iter_start = forward_start = _clock()
        for i, record in enumerate(records):
            start = _clock()
            record.layer.forward(record.bottom_vec, record.top_vec)
            forward_per_layer[i] += _clock() - start
        backward_start = _clock()
        forward_time += backward_start - forward_start
        # Like Caffe's tool, every layer's Backward runs, told which bottoms need a diff.
        for i in reversed(range(len(records))):
            record = records[i]
            start = _clock()
            record.layer.backward(record.top_vec, record.bottom_need_backward, record.bottom_vec)
            backward_per_layer[i] += _clock() - start
        end = _clock()
        backward_time += end - backward_start
        logger.info("Iteration: %d forward-backward time: %s ms.", j + 1, fmt((end - iter_start) * 1e3))
    total = _clock() - total_start

    def per_iter_ms(seconds: float) -> float:
        return seconds * 1e3 / iterations

    logger.info("Average time per layer: ")
    for name, forward, backward in zip(net.layer_names, forward_per_layer, backward_per_layer):
        logger.info("%10s\tforward: %s ms.", name, fmt(per_iter_ms(forward)))
        logger.info("%10s\tbackward: %s ms.", name, fmt(per_iter_ms(backward)))
    logger.info("Average Forward pass: %s ms.", fmt(per_iter_ms(forward_time)))
    logger.info("Average Backward pass: %s ms.", fmt(per_iter_ms(backward_time)))
    logger.info("Average Forward-Backward: %s ms.", fmt(per_iter_ms(total)))
    logger.info("Total Time: %s ms.", fmt(total * 1e3))
    logger.info("*** Benchmark ends ***")
    return {"forward": [per_iter_ms(t) for t in forward_per_layer],
            "backward": [per_iter_ms(t) for t in backward_per_layer],
            "forward_pass": per_iter_ms(forward_time), "backward_pass": per_iter_ms(backward_time),
            "forward_backward": per_iter_ms(total), "total": total * 1e3}
