"""What a fit is checked and used for: diagnostics, predictive checks, thermodynamics, the
model families side by side, the MLE comparison, the E/I and state analyses."""
