"""The ingest pipeline: validate, batch, and write events into the lake."""
