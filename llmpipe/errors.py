"""The one base class of errors meant for users.

An error whose message says everything a user needs (a dataset that cannot be read, a model that does not
fit a method, a launch that failed) derives from :class:`UserError`. The entry points print any of them
as ``<prog>: <message>`` without a traceback and exit with its ``exit_code``; anything else is a bug in
llmpipe and keeps its traceback. There is no list of names to keep up to date: deriving is enough.
"""
from __future__ import annotations


class UserError(Exception):
    """An error whose message is the whole story (printed without a traceback)."""

    exit_code: int = 1


def is_user_error(e: BaseException) -> bool:
    return isinstance(e, UserError)
