"""One module per ``bayes-ising`` verb; each defines ``register(subparsers, name)``."""
