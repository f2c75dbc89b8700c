"""edgerm.frameworks."""
