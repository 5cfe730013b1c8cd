"""Datasets: registry (dataset_info.json), formats, chat templates, processors and the loader.

Submodules are imported lazily by their users; importing llmpipe.data pulls in nothing heavy.
"""
