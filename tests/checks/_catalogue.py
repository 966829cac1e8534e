"""Helpers of the mistake-catalogue tests of labs 02, 03, 04 (sinusoids and Omniglot), 05, 06, 07 and 08.

Each catalogue writes a correct implementation with a ``mistake=`` switch (or builds each mistaken
implementation outright); a test turns one mistake on and asserts that the check fails with a
message that names it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest


def with_mistake(function: Callable, mistake: str) -> Callable:
    """``function`` with one mistake turned on, called like the student's function."""
    return lambda *args: function(*args, mistake=mistake)


def assert_named(check: Callable, function: Callable, *patterns: str, regex: bool = False) -> str:
    """``check(function)`` fails, and its message holds every pattern (with ``regex``, matches every
    regular expression, ``.`` matching newlines too); returns the message."""
    with pytest.raises(AssertionError) as info:
        check(function)
    message = str(info.value)
    for pattern in patterns:
        assert re.search(pattern, message, re.DOTALL) if regex else pattern in message, message
    return message
