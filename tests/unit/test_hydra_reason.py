"""What llmpipe shows of a failed Hydra composition (llmpipe.__main__.hydra_reason): the exception, without the
traceback and the HYDRA_FULL_ERROR hint."""
from __future__ import annotations

from llmpipe.__main__ import hydra_reason

TRACEBACK = """Traceback (most recent call last):
  File "/venv/hydra/_internal/config_loader_impl.py", line 390, in _apply_overrides_to_config
    OmegaConf.update(cfg, key, value, merge=True)
  File "/venv/omegaconf/dictconfig.py", line 477, in _get_node
    value: Optional[Node] = self.__dict__["_content"].get(key)
                            ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
AttributeError: 'NoneType' object has no attribute 'get'
    full_key: hydra.sweeper.params
    reference_type=Optional[Dict[str, str]]
    object_type=NoneType

Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.
"""


def test_the_exception_and_its_details_are_kept_after_a_traceback():
    """The exception's own indented lines (OmegaConf's full_key) used to be taken for frames, and nothing was left."""
    assert hydra_reason(TRACEBACK) == ("AttributeError: 'NoneType' object has no attribute 'get'\n"
                                       "    full_key: hydra.sweeper.params\n"
                                       "    reference_type=Optional[Dict[str, str]]\n"
                                       "    object_type=NoneType")


def test_a_message_without_traceback_is_kept_whole():
    text = ("Error merging override lora.rank=abc\nValue 'abc' of type 'str' could not be converted to Integer\n"
            "    full_key: lora.rank\n")
    assert hydra_reason(text) == text.strip()
