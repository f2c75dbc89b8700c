"""edgerm: a Mesos-style two-level resource manager for edge fleets.

Agents on devices report their resources, an asyncio master turns them into
offers, and frameworks accept offers to run WebAssembly or Docker tasks.
"""

__version__ = "0.1.0"
