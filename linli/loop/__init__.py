"""The closed loop 发现 → 上报 → 研判 → 处置 → 评价, one module per stage.

Each step takes a session (the caller commits: one unit of work) and returns a `StepResult`
naming the notifications it queued and the events to emit once committed.
"""

from linli.loop.common import LoopConfig, StepResult

__all__ = ["LoopConfig", "StepResult"]
