"""The small core every stage shares: the event model, settings and errors."""
