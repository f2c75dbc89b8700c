"""edgerm.master."""
