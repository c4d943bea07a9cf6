"""lakebench: events and documents on object storage, measured."""

__version__ = "0.1.0"
