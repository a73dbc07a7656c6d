"""Alternating rounds: every round runs each arm once, in an order rotated by the round, so that the
load of the moment falls on all arms alike and no arm always runs right after the same other one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

ArmT = TypeVar("ArmT")


def arm_order(arms: Sequence[ArmT], round_: int) -> list[ArmT]:
    """Round ``round_``'s order: the arms rotated by the round, so no arm always follows the same one."""
    shift = round_ % len(arms)
    return [*arms[shift:], *arms[:shift]]
