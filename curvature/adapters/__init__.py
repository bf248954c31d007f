"""Module adapters: how each supported layer type maps to Kronecker-factored blocks."""
