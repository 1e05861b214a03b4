"""Recognising cardholder data (DESIGN §2, invariant 7): what a card number looks like.

Used by the log redactor and by services that must refuse raw card data."""

from __future__ import annotations

import re

# Runs of at least 12 digits, optionally separated by single spaces or dashes: where a PAN
# (12 to 19 digits) may hide, possibly next to other numbers ("4111 1111 1111 1111 12/30").
# Input that must not carry card data is checked against any such run, even one glued to
# letters ("test_4111111111111111" is refused).
DIGIT_RUN = re.compile(r"(?<!\d)\d(?:[ -]?\d){11,}(?!\d)")
# Log redaction looks only at runs standing as a word of their own: digits glued to letters or
# `_` are part of an identifier (`cap_061180053987f56e56d66ac8`, a hex digest) that must stay
# readable to trace by id.
STANDALONE_DIGIT_RUN = re.compile(r"(?<![0-9A-Za-z_])\d(?:[ -]?\d){11,}(?![0-9A-Za-z_])")
_SEPARATOR = re.compile(r"[ -]")


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check every card number passes."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def run_holds_card_number(run: str) -> bool:
    """Whether some consecutive groups of a digit run (or the run itself) form 12 to 19 digits
    that pass the Luhn check."""
    groups = _SEPARATOR.split(run)
    for i in range(len(groups)):
        digits = ""
        for group in groups[i:]:
            digits += group
            if len(digits) > 19:
                break
            if len(digits) >= 12 and luhn_valid(digits):
                return True
    return False


def contains_card_number(text: str) -> bool:
    return any(run_holds_card_number(m.group(0)) for m in DIGIT_RUN.finditer(text))


def redact_card_numbers(text: str, replacement: str = "[REDACTED]") -> str:
    """`text` with every standalone run of digits that holds a card number replaced."""
    if not STANDALONE_DIGIT_RUN.search(text):
        return text
    return STANDALONE_DIGIT_RUN.sub(
        lambda m: replacement if run_holds_card_number(m.group(0)) else m.group(0), text
    )
