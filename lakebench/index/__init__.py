"""Indexes stored beside the lake, in the same object store: key -> row group, and full text."""
