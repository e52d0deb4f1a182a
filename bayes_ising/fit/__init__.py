"""Fitting: posteriors (NumPyro), maximum likelihood, model specs, the walk, provenance."""
