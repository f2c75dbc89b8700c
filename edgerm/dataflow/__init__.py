"""edgerm.dataflow: what a dataflow operator written outside edgerm needs.

- ``operator``  the Python operator SDK (``from edgerm.dataflow.operator import Record, run``):
  a Docker (or plain process) operator that speaks the dataflow contract.

Nothing is imported here.
"""
