"""Reports: studies built on robbench's datasets, attacks and evaluation (``robbench tradeoff``)."""
