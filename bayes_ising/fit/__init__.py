"""Fitting: posteriors (NumPyro), maximum likelihood, the K-pairwise family, model specs, the
fit-data object, the model check that a fit's centre must pass, the walk, provenance."""
