"""Quiet libraries: one progress line per stage and per logging step. Silences per-file download/load bars and
the deprecation chatter of the HF stack (errors and real warnings still show), and keeps PEFT from importing
quantization back-ends for models that do not use them. Called by the app, the spawned worker and chat/serve."""
from __future__ import annotations


def quiet_libraries() -> None:
    """One progress line per stage and per logging step: silence per-file download/load bars and the
    deprecation chatter of the libraries (errors and real warnings still show)."""
    import logging
    import os
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in ("matplotlib", "PIL", "filelock", "urllib3", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    # torchao (imported by transformers when installed) warns about its CUDA kernels on every CPU start,
    # and torch about torchao's pytree registrations: neither is actionable for a user
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from llmpipe.models import peft_probes

    peft_probes.install()   # PEFT must not import gptqmodel/torchao for models that are not quantized with them
