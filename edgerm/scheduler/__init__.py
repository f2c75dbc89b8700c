"""edgerm.scheduler."""
