"""How a gang that lost ranks goes on: healed from a surviving peer, or restarted from disk.

Pure: the driver asks every rank what it still holds (``Held``: the last step it completed, or
nothing) and this decides. Kept free of Ray and torch so it is tested as a table.

A survivor holds a consistent state: a failed collective raises before the optimizer applies a step
(DDP's all-reduce runs inside backward), so a rank is either at the step before the one in flight
or, when its all-reduce completed before the peer died, at that step. Both are states of a correct
run, so the most advanced survivor is the source and every other rank (the replacements, and any
survivor one step behind) receives its state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple, Union


@dataclass(frozen=True)
class Held:
    """What one rank still holds after the failure."""
    step: Optional[int]       # the last step it completed, or None (dead, or nothing kept)
    in_flight: bool = False   # it was inside a step when the collective failed (that step is dropped)
    busy: bool = False        # still inside its attempt (its failed collective has not raised yet)


@dataclass(frozen=True)
class HealPlan:
    """Who gives the state and who takes it, on the re-formed process group (ranks unchanged)."""
    source: int                   # the rank whose state every receiver loads
    step: int                     # the step the gang continues after
    receivers: Tuple[int, ...]    # replacements and survivors behind the source
    replaced: Tuple[int, ...]     # ranks whose process died: a new worker (a spare, or a new actor) takes each
    steps_lost: int               # steps the gang has to do again: at most the one in flight


def plan_heal(held: Dict[int, Held], world_size: int, mode: str) -> Union[HealPlan, str]:
    """A HealPlan, or why the gang restarts from disk instead (a sentence)."""
    if mode != "peer":
        return "failure.recovery=disk"
    if world_size < 2:
        return "a one-worker gang has no peer to heal from"
    survivors = {rank: h for rank, h in held.items() if h.step is not None}
    replaced = tuple(sorted(rank for rank in range(world_size) if rank not in survivors))
    if not survivors:
        return "no rank survived with its state"
    if not replaced:
        return "every rank is alive: the failure was not a lost worker"
    step = max(h.step for h in survivors.values())
    behind = [rank for rank, h in survivors.items() if h.step < step - 1]
    if behind:  # more than the step in flight apart: not one failed collective
        return f"the survivors disagree on the step (rank {behind[0]} at {survivors[behind[0]].step}, others at {step})"
    source = min(rank for rank, h in survivors.items() if h.step == step)
    receivers = tuple(sorted(set(replaced) | {rank for rank, h in survivors.items() if h.step < step}))
    steps_lost = 1 if any(h.in_flight for h in survivors.values() if h.step == step) else 0
    return HealPlan(source=source, step=step, receivers=receivers, replaced=replaced, steps_lost=steps_lost)
