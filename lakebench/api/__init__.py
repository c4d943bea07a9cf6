"""lakebench's HTTP services."""
