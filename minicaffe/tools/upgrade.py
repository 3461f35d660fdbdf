"""`minicaffe upgrade_net_proto_text / upgrade_net_proto_binary / upgrade_solver_proto_text`:
rewrite a file from an older Caffe in today's format (Caffe's tools of the same names).

    minicaffe upgrade_net_proto_text   old_deploy.prototxt   deploy.prototxt
    minicaffe upgrade_net_proto_binary old.caffemodel        new.caffemodel
    minicaffe upgrade_solver_proto_text old_solver.prototxt  solver.prototxt

minicaffe reads the old formats anyway (a Net upgrades its definition and its weights
as it loads them, see minicaffe.upgrade); these verbs write the upgraded file once, so
that the log stops saying so and other tools see today's format.

The net verbs apply every upgrade the file needs (V0 and V1 layers, data transformation
options, input fields, BatchNorm param specs); a file that needs none is written back
as it is, with a warning. The solver verb replaces the `solver_type` enum by the `type`
string; like Caffe's tool it leaves nets given inside the solver file (`net_param`) as
they are (they are upgraded when the solver builds them). The output is written
atomically (a temporary file, then a rename), so OUT may be IN. If an upgrade was
incomplete (a V0 option with no place in V1 is dropped and logged), OUT is still
written, and the command fails so that a script notices, as Caffe's tools do.
"""
from __future__ import annotations

import logging

from minicaffe import protoio
from minicaffe.common import MinicaffeError
from minicaffe.proto import caffe_pb2

log = logging.getLogger(__name__)


def _upgrade_net(path_in, path_out, read, write, what: str) -> int:
    from minicaffe.upgrade import net_needs_upgrade, upgrade_net_as_needed

    param = read(path_in, caffe_pb2.NetParameter())
    complete = True
    if net_needs_upgrade(param):
        complete = upgrade_net_as_needed(param, str(path_in))
    else:
        log.warning("File already in latest proto format: %s", path_in)
    write(path_out, param)
    log.info("Wrote upgraded NetParameter %s proto to %s", what, path_out)
    if not complete:
        raise MinicaffeError(f"{path_in}: the upgrade was incomplete: the settings named in the log "
                             f"above had no place in today's format and were dropped; {path_out} was "
                             "written without them")
    return 0


def upgrade_net_proto_text(args) -> int:
    return _upgrade_net(args.input, args.output, protoio.read_text, protoio.write_text, "text")


def upgrade_net_proto_binary(args) -> int:
    return _upgrade_net(args.input, args.output, protoio.read_binary, protoio.write_binary, "binary")


def upgrade_solver_proto_text(args) -> int:
    from minicaffe.solver import upgrade_solver_param

    param = protoio.read_solver_param(args.input)
    if param.HasField("solver_type"):
        upgrade_solver_param(param, str(args.input))
    else:
        log.warning("File already in latest proto format: %s", args.input)
    protoio.write_text(args.output, param)
    log.info("Wrote upgraded SolverParameter text proto to %s", args.output)
    return 0


def register(verbs) -> None:
    """Add the three upgrade verbs to the `minicaffe` command's subparsers."""
    for name, func, kind, help_text in (
            ("upgrade_net_proto_text", upgrade_net_proto_text, "net prototxt",
             "rewrite a net prototxt from an older Caffe format (V0, V1, input fields) in today's format"),
            ("upgrade_net_proto_binary", upgrade_net_proto_binary, ".caffemodel",
             "rewrite a .caffemodel from an older Caffe format (V0, V1 layers) in today's format"),
            ("upgrade_solver_proto_text", upgrade_solver_proto_text, "solver prototxt",
             "rewrite a solver prototxt's solver_type enum as today's type string")):
        p = verbs.add_parser(name, help=help_text, description=help_text + ".")
        p.add_argument("input", help=f"the {kind} to upgrade")
        p.add_argument("output", help=f"where to write the upgraded {kind} (may be the input)")
        p.set_defaults(func=func)
