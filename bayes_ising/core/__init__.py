"""The model's core: energy, enumeration, sampling, statistics, the size limits."""
