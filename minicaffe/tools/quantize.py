"""`minicaffe quantize`: int8 post-training quantization of a trained net.

    minicaffe quantize --model lenet_train_test.prototxt --weights lenet_iter_10000.caffemodel \
                       --calibration-batches 10 --output lenet_int8.h5 [--phase TEST] [--gpu 0]
    minicaffe test --quantized lenet_int8.h5 --model lenet_train_test.prototxt --iterations 100

The net is built in the given phase (TEST by default) with the float weights, and runs
`--calibration-batches` forward passes on the batches its own data layer reads: the
input range of every Convolution and InnerProduct layer is recorded, then their weights
are quantized per output channel (minicaffe/quantize.py has the maths, docs/quantization.md
the measured results). `--phase TRAIN` calibrates on the training net's data instead,
which keeps the test set out of calibration (use it for nets without train-only
behaviour such as Dropout, which would widen the recorded ranges).
The file (HDF5, layout in minicaffe/quantize.py) holds the int8 weights, their scales,
the biases and the input scales; `minicaffe test --quantized` scores it.
"""
from __future__ import annotations

import logging

from minicaffe.common import MinicaffeError
from minicaffe.tools import parse_stages, select_engine

log = logging.getLogger("minicaffe.caffe")


def run(args) -> int:
    from minicaffe import quantize
    from minicaffe.net import TEST, TRAIN, Net

    for flag, value in (("--model", args.model), ("--weights", args.weights), ("--output", args.output)):
        if not value:
            raise MinicaffeError(f"`minicaffe quantize` needs {flag}: give --model M.prototxt "
                                 "--weights W.caffemodel --output Q.h5")
    if args.calibration_batches < 1:
        raise MinicaffeError(f"--calibration-batches must be at least 1, got {args.calibration_batches}")
    if not str(args.output).endswith(".h5"):
        raise MinicaffeError(f"--output {args.output}: the quantized model is an HDF5 file; "
                             "name it with the .h5 suffix")
    select_engine(args.gpu)  # as `minicaffe test`: --gpu without a working device is an error
    net = Net(args.model, TRAIN if args.phase == "TRAIN" else TEST, level=args.level,
              stages=parse_stages(args.stage))
    net.copy_trained_layers_from(args.weights)
    log.info("Calibrating on %d batch(es) of the %s net", args.calibration_batches, args.phase)
    model = quantize.quantize_net(net, args.calibration_batches, model=args.model, phase=args.phase)
    quantize.save(model, args.output)
    size = model.weight_bytes()
    log.info("Wrote %d int8 layer(s) to %s: weights %d bytes in int8 against %d in float32 "
             "(+ %d bytes of scales and biases)", len(model.layers), args.output, size["int8"],
             size["float32"], size["scales_and_biases"])
    return 0


def register(verbs) -> None:
    """Add the `quantize` verb to the `minicaffe` command's subparsers."""
    p = verbs.add_parser("quantize", help="int8 post-training quantization of a trained model",
                         description="Calibrate a trained model's activation ranges on real batches "
                                     "and write its Convolution and InnerProduct layers in int8.")
    p.add_argument("--model", "-model", help="the model definition protocol buffer text file")
    p.add_argument("--weights", "-weights", help="the trained float .caffemodel")
    p.add_argument("--calibration-batches", "--calibration_batches", "-calibration_batches", type=int,
                   default=10, help="batches of the model's data layer to calibrate on (default: 10)")
    p.add_argument("--output", "-output", help="the quantized model to write (.h5)")
    p.add_argument("--phase", "-phase", default="TEST", type=str.upper, choices=("TRAIN", "TEST"),
                   help="the phase whose net (and data) calibrates (default: TEST)")
    p.add_argument("--gpu", "-gpu", help="optional; calibrate in GPU mode on this device id")
    p.add_argument("--level", "-level", type=int, default=0, help="optional; the net's level")
    p.add_argument("--stage", "-stage", help="optional; the net's stages, separated by ','")
    p.set_defaults(func=run)
