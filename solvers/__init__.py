"""Placement as bin packing: solvers, bounds and the standard bin-packing instances (installed as loraplace.solvers)."""
