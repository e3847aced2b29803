"""What to do with flagged inputs: exclude them, hold the decision for review, or only record the flags.

- ``exclude``: every flagged key is dropped from the decision's inputs; the decision goes ahead.
- ``hold``: nothing is dropped; the decision must not be posted until a person has reviewed the flags.
- ``record``: nothing is dropped and nothing is held; the flags only go into the decision's record.

Note flags (``models.quality.inputs.NOTE_REASONS``, e.g. ``short_history``) say what could not be checked;
they are recorded but never drop or hold anything.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from models.errors import ValidationError

from .inputs import NOTE_REASONS

PolicyMode = Literal["exclude", "hold", "record"]
MODES: tuple[str, ...] = ("exclude", "hold", "record")


class Flag(Protocol):
    """Anything with a ``key`` and a ``reason``: :class:`ReadingFlag` and :class:`InputFlag` both are."""

    @property
    def key(self) -> Hashable: ...

    @property
    def reason(self) -> Any: ...


@dataclass(frozen=True)
class PolicyOutcome:
    """``drop``: keys to remove from the inputs. ``hold``: True when the decision must wait for review.
    ``flags``: every flag seen (notes included), for the record. ``mode``: the mode applied."""

    mode: PolicyMode
    drop: frozenset[Hashable]
    hold: bool
    flags: tuple[Flag, ...]


def apply_policy(flags: Iterable[Flag], *, mode: str) -> PolicyOutcome:
    """Apply ``mode`` to ``flags``. Raises ValidationError ``bad_policy`` for an unknown mode."""
    if mode not in MODES:
        raise ValidationError(
            f"quality policy mode {mode!r} is not one of {', '.join(MODES)}", reason="bad_policy"
        )
    all_flags = tuple(flags)
    acting = [f for f in all_flags if f.reason not in NOTE_REASONS]
    drop = frozenset(f.key for f in acting) if mode == "exclude" else frozenset()
    return PolicyOutcome(
        mode=cast(PolicyMode, mode), drop=drop, hold=mode == "hold" and bool(acting), flags=all_flags
    )


def kept_readings(readings: Sequence[Mapping[str, Any]], outcome: PolicyOutcome) -> list[Mapping[str, Any]]:
    """``readings`` without those whose (device, seq) the outcome drops, order preserved."""
    return [r for r in readings if (str(r["device"]), int(r["seq"])) not in outcome.drop]


def kept_inputs(rows: Sequence[Mapping[str, Any]], outcome: PolicyOutcome) -> list[Mapping[str, Any]]:
    """Region-mean ``rows`` without those whose (region_id, variable, date) the outcome drops."""
    return [r for r in rows if (str(r["region_id"]), str(r["variable"]), str(r["date"])) not in outcome.drop]
