"""Helpers of the mistake-catalogue tests of labs 02, 04 (sinusoids and Omniglot) and 05.

Each catalogue writes a correct implementation with a ``mistake=`` switch; a test turns one
mistake on and asserts that the check fails with a message that names it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest


def with_mistake(function: Callable, mistake: str) -> Callable:
    """``function`` with one mistake turned on, called like the student's function."""
    return lambda *args: function(*args, mistake=mistake)


def assert_named(check: Callable, function: Callable, *patterns: str) -> str:
    """``check(function)`` fails, and its message holds every pattern; returns the message."""
    with pytest.raises(AssertionError) as info:
        check(function)
    for pattern in patterns:
        assert pattern in str(info.value), str(info.value)
    return str(info.value)
