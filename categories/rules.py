"""Category rules: regular expressions run by RE2, in time linear in the text, on a bounded
prefix of it. RE2 has no backtracking, so no rule, shipped or written by an operator, can
stall a request however the prompt is built; a pattern RE2 cannot run in linear time
(backreferences, lookaround) is refused when the policies are loaded."""

from __future__ import annotations

from typing import Any

import re2

# Rules look at most this many characters of a prompt: a category shows at its start.
PREFIX_CHARS = 4096


class RuleError(ValueError):
    """A rule RE2 does not accept; the message says why."""


def _options() -> Any:
    options = re2.Options()
    options.case_sensitive = False
    options.never_capture = True
    options.log_errors = False
    options.max_mem = 8 << 20
    return options


class Rule:
    """One compiled rule. Thread-safety: immutable; `search` may run in any thread."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        try:
            self._compiled = re2.compile(pattern, _options())
        except (re2.error, UnicodeEncodeError) as exc:
            raise RuleError(str(exc) or "not a pattern RE2 accepts") from None

    def search(self, text: str) -> bool:
        return self._compiled.search(text[:PREFIX_CHARS]) is not None
