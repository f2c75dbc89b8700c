"""edgerm.agent."""
