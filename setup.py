"""The compiled parts, declared here because pyproject.toml's ext-modules table is still experimental in setuptools;
everything else is in pyproject.toml. Both are optional: without a C compiler the install succeeds and Python runs
instead. The twin's step loop (twin/native.py calls it; -ffp-contract=off keeps its floating point the Python
loop's, bit for bit) and the surrogate's sum over its trees for a few rows (surrogate/trees.py)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("loraplace.twin._core", ["twin/_core.c"], optional=True,
                             extra_compile_args=["-O2", "-ffp-contract=off"]),
                   Extension("loraplace.surrogate._trees", ["surrogate/_trees.c"], optional=True,
                             extra_compile_args=["-O2"])])
