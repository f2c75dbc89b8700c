"""Generated protobuf modules for the ``edgerm.v1`` wire schema.

Do not edit: regenerate with ``scripts/gen_proto.sh``. Generated classes never
leave the wire layer; use :mod:`edgerm.wire` to convert.
"""
