"""Distributed launch: stages whose kind is distributed-capable (train) run under torchrun (or the
DeepSpeed launcher) when ``launch.kind`` is not ``local``.

Compose once, spawn workers: the parent writes the node's resolved config (secrets redacted) and a small
spec next to it, starts the launcher, and publishes after every rank exited 0. Each rank runs
``python -m llmpipe.launch.worker <spec.json>``, which rebuilds the StageContext from those files (no
Hydra), runs the stage function, and only global rank 0 writes outputs. Secrets travel in the
environment, never on argv.

Modules: presets (shipped DeepSpeed JSON), command (launcher argv and environment), spec (what the
parent hands to workers), worker (the rank entry point), spawn (run the launcher, report a failing
rank), stage (the runner's hook, incl. multi-node followers), trainer_args (TrainingArguments settings
of a rank), saving (rank-aware model saving)."""
