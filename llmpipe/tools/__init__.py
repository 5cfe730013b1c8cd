"""The ``llmpipe-tools`` console script (:mod:`llmpipe.tools.cli`): explain, import-llamafactory, ls, docs.

Kept apart from the Hydra app, whose argv belongs to Hydra. Nothing here imports torch.
"""
