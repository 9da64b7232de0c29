"""Linli's errors: one small tree, translated at each boundary (CLI, API, dashboard).

    LinliError                    — base; `.hint` says what to do
    ├── ValidationError           — bad input from a person or device (a report, a CSV row, a photo)
    ├── NotFound                  — an id or code that does not exist
    ├── IllegalTransition         — a case state change the state machine forbids
    ├── Conflict                  — someone else got there first (a claim on a case already taken)
    ├── ConfigurationError        — settings or policy that cannot work
    ├── DeliveryError             — an outside system (Apprise, object store) refused or failed
    └── AccessDenied              — a failed login, or a role that may not do this
"""

from __future__ import annotations


class LinliError(Exception):
    """Base of every error Linli raises on purpose; carries a hint for the user."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class ValidationError(LinliError):
    """Input that cannot be accepted as given."""

    def __init__(self, message: str, *, field: str = "", hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.field = field


class NotFound(LinliError):
    """Something named by id or code does not exist."""


class IllegalTransition(LinliError):
    """A case cannot move from its current state to the one asked for."""


class ConfigurationError(LinliError):
    """Settings or policy that cannot work as given."""


class DeliveryError(LinliError):
    """An outside system failed to take what we sent."""


class Conflict(LinliError):
    """Someone else acted first: the case was claimed or changed meanwhile."""


class AccessDenied(LinliError):
    """A login that fails, or a role that may not do what was asked (from the roles issue on)."""
