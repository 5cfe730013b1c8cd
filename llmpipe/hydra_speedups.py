"""Start-up costs of Hydra 1.3 that llmpipe removes, without changing what Hydra computes.

* ``Hydra.get_mode`` composes the whole config a second time only to read ``hydra.mode``. llmpipe's
  primary config leaves it unset and recipes may not set ``hydra.*`` (llmpipe.safety refuses them), so
  unless the command line names ``hydra.mode`` the answer is None — what Hydra would have found — and
  ``-m``/``--multirun`` decides, as always.
* ``--help`` lists every config group; Hydra builds a new caching repository (a deep copy of the whole
  ConfigStore) for each of ~140 group listings. Listings without overrides share one repository per
  loader and primary config.
* ``typing.get_type_hints`` of the schema dataclasses is evaluated once per class (the flag table and the
  field metadata ask for it per field).
* A basic sweep's jobs are composed three times: by llmpipe's pre-flight (llmpipe.hydra_callbacks, which must
  see every job's config before anything is written), by Hydra's sweeper (``Sweeper.validate_batch_is_legal``,
  "to detect failures early"), and by the launcher for the job itself. The sweeper's check is skipped for a
  batch whose every job llmpipe's pre-flight composed from the same override list (:data:`VALIDATED_JOBS`):
  ~0.25 s per job before the first one starts (1 s for a 2x2 sweep).

The first two replace private methods of ``hydra._internal`` and the last wraps a sweeper method, so :func:`install` patches only the
hydra-core versions in :data:`SUPPORTED_HYDRA` (the ones whose internals were read and tested); any other
version runs Hydra's own code, unchanged. The measured gain is in docs/bench.md ("Start-up patch").
"""
from __future__ import annotations

import functools
import typing
from typing import Any

# hydra-core versions whose Hydra.get_mode / ConfigLoaderImpl.get_group_options /
# _parse_overrides_and_create_caching_repo were checked against these replacements. Add a version only
# after re-reading those methods and running tests/unit/test_startup_speedups.py on it.
SUPPORTED_HYDRA: tuple[str, ...] = ("1.3.8",)
# the job override lists (as Hydra's basic sweeper builds them) that llmpipe's pre-flight composed and passed
VALIDATED_JOBS: set[tuple[str, ...]] = set()


@functools.lru_cache(maxsize=None)
def type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def hydra_version() -> str | None:
    """The installed hydra-core version, None when it cannot be read. From the package itself (its
    ``__version__``; hydra is imported before any patch anyway), not its distribution metadata: importing
    ``importlib.metadata`` cost a rejected config ~10 ms."""
    try:
        import hydra
    except ImportError:
        return None
    version = getattr(hydra, "__version__", None)
    return str(version) if version else None


def _mode_named(argv: list[str]) -> bool:
    return any(a.lstrip("+~").startswith("hydra.mode") for a in argv)


def install(argv: list[str]) -> bool:
    """Patch Hydra's start-up shortcuts for this process; False (nothing patched) on other hydra-core versions."""
    if hydra_version() not in SUPPORTED_HYDRA:
        return False

    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.hydra import Hydra
    from hydra.core.object_type import ObjectType

    if not _mode_named(argv) and not getattr(Hydra.get_mode, "llmpipe", False):
        def get_mode(self, config_name, overrides):
            return None
        get_mode.llmpipe = True
        Hydra.get_mode = get_mode

    _skip_validated_batches()
    original = ConfigLoaderImpl.get_group_options
    if getattr(original, "llmpipe", False):
        return True

    @functools.wraps(original)
    def get_group_options(self, group_name, results_filter=ObjectType.CONFIG, config_name=None, overrides=None):
        if overrides:
            return original(self, group_name, results_filter, config_name, overrides)
        repos = self.__dict__.setdefault("_llmpipe_repos", {})
        if config_name not in repos:
            repos[config_name] = self._parse_overrides_and_create_caching_repo(config_name, [])[1]
        return repos[config_name].get_group_options(group_name, results_filter)
    get_group_options.llmpipe = True
    ConfigLoaderImpl.get_group_options = get_group_options
    return True


def _skip_validated_batches() -> None:
    from hydra.plugins.sweeper import Sweeper

    original = Sweeper.validate_batch_is_legal
    if getattr(original, "llmpipe", False):
        return

    @functools.wraps(original)
    def validate_batch_is_legal(self, batch):
        if batch and all(tuple(job) in VALIDATED_JOBS for job in batch):
            return None   # llmpipe's pre-flight composed each of these jobs already
        return original(self, batch)
    validate_batch_is_legal.llmpipe = True
    Sweeper.validate_batch_is_legal = validate_batch_is_legal
