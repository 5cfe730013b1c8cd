"""Exporting a model: merge adapters, GPTQ-quantize, write (sharded, legacy) export folders atomically,
verify every artifact in a fresh process, write a model card, push to the Hub or a git remote.

The stage modules (llmpipe/stages/{merge,quantize,export,push}.py) are thin; the work lives here, one
concept per module. Modules that import torch do so inside functions, so importing this package is cheap.
"""
