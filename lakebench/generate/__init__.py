"""Sources of events: a deterministic synthetic generator and importers of real data files."""
