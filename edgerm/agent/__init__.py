"""edgerm.agent: the agent that runs on each device (see README.md in this package).

Import the parts you need (``edgerm.agent.main.start_agent``,
``edgerm.agent.state.AgentCore``, ...); this package imports nothing itself,
so pure code can use the core without loading aiohttp or wasmtime.
"""
