"""The agent's dataflow data plane: hosting operator instances on MQTT.

Modules (imports go down this list; see README.md for the pipeline):

- ``contract``  the ``EDGERM_DF_*`` env contract, topics, broker URLs (pure)
- ``records``   micro-batches, replica selection, the bounded queue, module input/output (pure)
- ``delivery``  ordered acks, duplicates at sinks, state checkpoints (pure)
- ``executor``  one WASI module run per batch on wasmtime (blocking, threads)
- ``readers``   device readers for sources (sim, file, cmd)
- ``sinks``     file and HTTP delivery for sinks
- ``mqtt``      the one place a client connects to the broker (persistent session, manual acks)
- ``slot``      taking an instance slot over: the retained claim, reading claim and checkpoint
- ``host``      ``OperatorHost``: one instance, MQTT in and out, stats
- ``runtime``   ``DataflowRuntime``: the agent's wasm runtime, hosting dataflow tasks

Nothing is imported here, so ``contract`` can be used without loading MQTT.
"""
