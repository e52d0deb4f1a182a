"""What a fit is checked and used for: diagnostics, predictive checks, validity, thermodynamics,
the MLE comparison, the E/I and state analyses."""
