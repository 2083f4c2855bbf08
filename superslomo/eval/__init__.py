"""Quality metrics, triplet data sets and parity checks."""
