"""Reports of a run: Markdown and one self-contained HTML page, both from the result file alone."""
