"""The twin's step loop in C (twin/native.py calls it), declared here because pyproject.toml's ext-modules table is
still experimental in setuptools; everything else is in pyproject.toml. Optional: without a C compiler the install
succeeds and the Python loop runs. -ffp-contract=off keeps its floating point the Python loop's, bit for bit."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("loraplace.twin._core", ["twin/_core.c"], optional=True,
                             extra_compile_args=["-O2", "-ffp-contract=off"])])
