"""Masking of personal data (names, phones, ID numbers, plates) wherever Linli shows it.

Every helper keeps a little of the start and the end so a person can still recognise their own
record, hides the rest with ``*`` (one per hidden character, so the length stays visible, except
for Latin names), and hides everything when the input is too short for a partial view to be safe.

What each keeps:

    mask_phone("13812345678")          -> "138****5678"        first 3, last 4 (8+ characters)
    mask_name("王建国")                -> "王**"               first character
    mask_name("John Smith")            -> "J***"               first letter, always three stars
    mask_id_number("340104199001011234") -> "340*************34"  first 3, last 2 (10+ characters)
    mask_plate("皖A12345")             -> "皖A***45"           province + city letter, last 2

For an 18-digit resident ID, the first 3 digits name only the province and part of the city;
the county (digits 4–6) and the birth date (digits 7–14) are always hidden. The last 2 digits
(sequence parity and check digit) stay visible so a worker can confirm "ending in 34" on the
phone. Empty input gives ``""``; ``None`` is treated as empty.
"""

from __future__ import annotations

STAR = "*"


def _mask(value: str, keep_start: int, keep_end: int) -> str:
    """Keep `keep_start` leading and `keep_end` trailing characters, star the rest (length kept)."""
    hidden = len(value) - keep_start - keep_end
    if hidden <= 0:
        return STAR * len(value)
    tail = value[len(value) - keep_end:] if keep_end else ""
    return value[:keep_start] + STAR * hidden + tail


def _clean(value: str | None) -> str:
    return (value or "").strip()


def mask_phone(phone: str | None) -> str:
    """A phone number with only its first 3 and last 4 characters visible: 138****5678."""
    value = _clean(phone)
    if len(value) >= 8:
        return _mask(value, 3, 4)
    if len(value) >= 5:
        return _mask(value, 0, 2)
    return STAR * len(value)


def mask_name(name: str | None) -> str:
    """A person's name with only its first character visible: 王** (Chinese), J*** (Latin)."""
    value = _clean(name)
    if not value:
        return ""
    first = value[0]
    if first.isascii():
        # Latin names: a fixed number of stars, so the length of the name is not given away.
        return first.upper() + STAR * 3 if first.isalpha() else STAR * 3
    if len(value) == 1:
        return STAR
    return first + STAR * min(len(value) - 1, 3)


def mask_id_number(id_number: str | None) -> str:
    """An ID number with only its first 3 and last 2 characters visible (birth date always hidden)."""
    value = _clean(id_number)
    if len(value) >= 10:
        return _mask(value, 3, 2)
    if len(value) >= 5:
        return _mask(value, 1, 1)
    return STAR * len(value)


def mask_plate(plate: str | None) -> str:
    """A vehicle plate with the province and city letter and the last 2 characters visible: 皖A***45."""
    value = _clean(plate).replace(" ", "").replace("·", "")
    if len(value) >= 5:
        return _mask(value, 2, 2)
    if len(value) >= 2:
        return _mask(value, 1, 0)
    return STAR * len(value)
