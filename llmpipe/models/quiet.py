"""Quiet libraries: the console shows llmpipe's own lines and each distinct library warning once, attributed
("llmpipe: warning from transformers: ..."); everything the libraries log or warn goes to the job's log file
(the Hydra job folder's ``llmpipe.log``) in full. Also silences per-file download/load bars and keeps PEFT from
importing quantization back-ends for models that do not use them. Called by the app, the spawned worker and
chat/serve.

What never reaches the console (it is in the log file):

- deprecation chatter (``FutureWarning``, ``DeprecationWarning``) and records below WARNING;
- lines that look like failures and are not failures of this run (``QUIET_PATTERNS``: optional kernels that a
  CPU run cannot load, a context-length note of a tokenizer that llmpipe truncates itself, ...);
- a repeat of a warning already shown (the count is in the log file).
"""
from __future__ import annotations

import logging
import re
import sys

# the libraries whose loggers are routed (a logger "a.b" belongs to library "a")
LIBRARIES = ("transformers", "peft", "trl", "accelerate", "datasets", "huggingface_hub", "torch", "torchao",
             "bitsandbytes", "gptqmodel", "deepspeed", "hqq", "optimum", "tokenizers", "safetensors", "kernels",
             "matplotlib", "PIL", "filelock", "urllib3", "httpx", "fsspec", "numexpr", "jieba", "nltk", "vllm")
# shown on the console: no (they are not failures of this run); always written to the log file
QUIET_PATTERNS = tuple(re.compile(p) for p in (
    r"^Failed to load .*\.so",                         # torchao's CUDA kernels on a CPU machine
    r"Failed to load CPU gemm_4bit_forward",           # bitsandbytes' optional hub kernel
    r"Token indices sequence length is longer",        # llmpipe truncates to data.cutoff_len itself
    r"mtime may not be reliable",                      # checkpoint ordering falls back to step numbers
    r"Python GIL is enabled", r"Auto setting (PYTORCH_ALLOC_CONF|CUDA_DEVICE_ORDER)",
    r"GPT-QModel", r"torch_dtype.*deprecated", r"`use_cache=True` is incompatible with gradient checkpointing",
    r"Detected no triton",                             # torchao on a CPU machine
    r"is an Enum subclass and is now natively supported",   # torch about torchao's pytree registrations
))
_MAX_CHARS = 300
OWN_LOGGERS = ("llmpipe", "hydra", "__main__", "root")


def library_of(name_or_path: str) -> str | None:
    """The library a logger name or a source file belongs to (None for llmpipe and unknown code)."""
    if "/" in name_or_path or "\\" in name_or_path:
        parts = re.split(r"[\\/]", name_or_path)
        for marker in ("site-packages", "dist-packages"):
            if marker in parts and parts.index(marker) + 1 < len(parts):
                top = parts[parts.index(marker) + 1]
                return top[:-3] if top.endswith(".py") else top
        return None
    top = name_or_path.split(".")[0]
    return None if top in ("llmpipe", "root", "") else top


class ConsoleOnce(logging.Handler):
    """Shows each distinct library warning once on stderr as ``llmpipe: warning from <library>: <text>``."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen: dict[tuple[str, str], int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage().strip()
        except Exception:   # a library's bad format string must not stop the run
            text = str(record.msg)
        lib = getattr(record, "llmpipe_library", None) or library_of(record.name) or record.name
        if not text or any(p.search(text) for p in QUIET_PATTERNS):
            return
        key = (lib, text)
        self.seen[key] = self.seen.get(key, 0) + 1
        if self.seen[key] > 1:
            return
        first = text.splitlines()[0]
        if len(first) > _MAX_CHARS:
            first = first[:_MAX_CHARS] + " ..."
        level = "error" if record.levelno >= logging.ERROR else "warning"
        stream = sys.stderr
        stream.write(f"llmpipe: {level} from {lib}: {first}\n")
        stream.flush()


_CONSOLE = ConsoleOnce()


def log_files() -> list[str]:
    """The files the root logger writes to (Hydra's job log, ``<job folder>/llmpipe.log``), if any."""
    return [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


def _PLAIN_SHOWWARNING(message, category, filename, lineno, file=None, line=None):
    import warnings

    (file or sys.stderr).write(warnings.formatwarning(message, category, filename, lineno, line))


def _showwarning(message, category, filename, lineno, file=None, line=None):
    """warnings.warn from a library: into the log file always, on the console once unless deprecation chatter."""
    lib = library_of(str(filename))
    if lib is None:   # llmpipe's own or the user's code: as Python shows it
        return _PLAIN_SHOWWARNING(message, category, filename, lineno, file, line)
    logger = logging.getLogger(f"llmpipe.library.{lib}")
    level = logging.INFO if issubclass(category, (FutureWarning, DeprecationWarning, PendingDeprecationWarning)) \
        else logging.WARNING
    logger.log(level, "%s: %s (%s:%s)", category.__name__, message, filename, lineno,
               extra={"llmpipe_library": lib})


def _route(logger: logging.Logger, files: list[logging.Handler]) -> None:
    for h in list(logger.handlers):
        if h is not _CONSOLE and h not in files:
            logger.removeHandler(h)
    for h in (*files, _CONSOLE):
        if h not in logger.handlers:
            logger.addHandler(h)
    logger.propagate = False


class _OnlyOwnRecords(logging.Filter):
    """On the root's console handler (Hydra's): a record of any other library than the routed ones is shown the
    ConsoleOnce way (once, attributed, noise left out) instead of raw; llmpipe's, Hydra's (the sweep's
    "#0 : ..." lines) and the script's own pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        if library_of(record.name) is None or record.name.split(".")[0] in OWN_LOGGERS:
            return True
        if record.levelno >= logging.WARNING:
            _CONSOLE.handle(record)
        return False


_OWN = _OnlyOwnRecords()


def route_library_logs() -> None:
    """Send every library logger to the job's log file and to the once-per-warning console line."""
    import warnings

    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    for h in logging.getLogger().handlers:
        if not isinstance(h, logging.FileHandler) and _OWN not in h.filters:
            h.addFilter(_OWN)
    for name in LIBRARIES:
        _route(logging.getLogger(name), files)
    _route(logging.getLogger("llmpipe.library"), files)
    logging.getLogger("llmpipe.library").setLevel(logging.INFO)   # deprecation chatter: the log file only
    for name in ("torchao", "torch.utils._pytree", "bitsandbytes", "matplotlib", "PIL", "filelock", "urllib3",
                 "httpx"):
        logger = logging.getLogger(name)
        if logger.level in (logging.NOTSET, logging.DEBUG, logging.INFO) or logger.level > logging.WARNING:
            logger.setLevel(logging.WARNING)   # their INFO chatter stays out even of the log file
    if "transformers" in sys.modules or "transformers.utils.logging" in sys.modules:
        _quiet_transformers()
    warnings.simplefilter("default")            # each distinct warning once per place, not "ignore"
    warnings.showwarning = _showwarning


def _quiet_transformers() -> None:
    """transformers configures its own stderr handler on first use; replace it with the routed ones."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_default_handler()
    hf_logging.disable_progress_bar()
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    _route(logging.getLogger("transformers"), files)


def quiet_libraries() -> None:
    """One progress line per stage and per logging step; library output to the log file, warnings once."""
    import os

    from llmpipe.models.library_imports import once_package_scan

    once_package_scan()   # before transformers and TRL scan the installed packages (0.4 s each)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    try:
        import torch._logging  # noqa: F401  (torch installs its own handler on "torch" at import: replace it now)
    except ImportError:
        pass
    route_library_logs()
    try:
        import transformers.utils.logging  # noqa: F401  (cheap: transformers' top level is lazy)
    except ImportError:
        pass
    else:
        _quiet_transformers()
    from llmpipe.models import peft_probes

    peft_probes.install()   # PEFT must not import gptqmodel/torchao for models that are not quantized with them
    from llmpipe.models import bnb_layout

    bnb_layout.install()   # 4-bit layers must not switch to bitsandbytes' bf16 inference layout on AVX512-BF16 CPUs
