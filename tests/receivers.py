"""Real receivers for notification tests: the HTTP one Linli ships (an SMTP one is not needed yet)."""

from linli.receiver import Message, NotificationReceiver, run_receiver

__all__ = ["Message", "NotificationReceiver", "run_receiver"]
