"""The product's benchmark system: workloads, timed runs, and result files with every raw sample."""
