"""A hang report that stays readable at hundreds of ranks (pure: text in, text out).

Every rank's stack repeated would be megabytes at 256 ranks, and the one rank that matters lost
among them. As py-spy-style dump tools and torch's flight recorder do, identical stacks are shown
once with the ranks that share them ("ranks 0, 2-7"); the groups that differ from the majority come
first (a stalled rank is usually the odd one out, its peers all wait in the same collective); the
report is cut to a size limit, and the full dump of every rank goes to a file the report names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

REPORT_LIMIT_BYTES = 20_000
DETAILS_PER_GROUP = 4   # ranks of a group named with their node, pid and phase; the rest only counted
NO_STACK = "(no stack: worker unresponsive)"

# What differs between ranks standing at the same place: object addresses, unnamed threads' ids, the
# numbers in thread names (Ray's executor threads are "Dummy-1" on one rank, "Dummy-2" on the next).
ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
THREAD_ID = re.compile(r"^--- \d+$", re.MULTILINE)
THREAD_NUMBER = re.compile(r"^(--- .*?)-\d+$", re.MULTILINE)


@dataclass(frozen=True)
class RankState:
    rank: int
    detail: str  # where it runs and what it last did: "node 10.0.0.1, pid 42: no progress for 12s, ..."
    stack: str


@dataclass(frozen=True)
class StackGroup:
    ranks: Tuple[int, ...]  # ascending
    stack: str              # as the group's first rank reported it


def normalise(stack: str) -> str:
    return THREAD_NUMBER.sub(r"\1-N", THREAD_ID.sub("--- <thread>", ADDRESS.sub("0x?", stack)))


def likely_culprit(states: Sequence[RankState]) -> int:
    """The stalest rank of the first group: an odd one out if there is one, else the stalest rank."""
    stalest_first = [s.rank for s in states]
    first_group = set(group_stacks({s.rank: s.stack for s in states}, stalest_first)[0].ranks)
    return next(rank for rank in stalest_first if rank in first_group)


def group_stacks(stacks: Mapping[int, str], likely_first: Sequence[int] = ()) -> List[StackGroup]:
    """Identical (normalised) stacks as one group each; the smallest groups first, the majority last.
    Groups of one size are ordered by their likeliest culprit in ``likely_first`` (then by rank)."""
    ranks_of: Dict[str, List[int]] = {}
    shown: Dict[str, str] = {}
    for rank in sorted(stacks):
        key = normalise(stacks[rank])
        ranks_of.setdefault(key, []).append(rank)
        shown.setdefault(key, stacks[rank])
    position = {rank: i for i, rank in enumerate(likely_first)}
    groups = [StackGroup(tuple(ranks), shown[key]) for key, ranks in ranks_of.items()]
    return sorted(groups, key=lambda g: (len(g.ranks), min(position.get(r, len(position) + r) for r in g.ranks)))


def rank_ranges(ranks: Sequence[int]) -> str:
    """[0, 1, 2, 3, 5, 7, 8] -> "0-3, 5, 7-8"."""
    ordered = sorted(set(ranks))
    if not ordered:
        return ""
    spans, start, previous = [], ordered[0], ordered[0]
    for rank in ordered[1:] + [None]:
        if rank is not None and rank == previous + 1:
            previous = rank
            continue
        spans.append(f"{start}" if start == previous else f"{start}-{previous}")
        if rank is not None:
            start = previous = rank
    return ", ".join(spans)


def ranks_label(ranks: Sequence[int]) -> str:
    return f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {rank_ranges(ranks)}"


def render_group(group: StackGroup, details: Mapping[int, str], world: int) -> str:
    lines = [f"{ranks_label(group.ranks)} ({len(group.ranks)} of {world} ranks) in this stack:"]
    lines += [f"  rank {rank} ({details[rank]})" for rank in group.ranks[:DETAILS_PER_GROUP] if rank in details]
    if len(group.ranks) > DETAILS_PER_GROUP:
        lines.append(f"  ... and {len(group.ranks) - DETAILS_PER_GROUP} more ranks")
    lines.append(indent(group.stack))
    return "\n".join(lines)


def hang_report(states: Sequence[RankState], dump_path: Optional[str], limit_bytes: int = REPORT_LIMIT_BYTES) -> str:
    """Grouped stacks, the odd ones out first, at most ``limit_bytes`` (UTF-8), naming the full dump.
    ``states`` come likeliest culprit first (the watchdog's stalest ranks)."""
    groups = group_stacks({s.rank: s.stack for s in states}, [s.rank for s in states])
    details = {s.rank: s.detail for s in states}
    where = f"every rank's stack: {dump_path}" if dump_path else "the full dump could not be written"
    header = f"{len(groups)} distinct stack(s) across {len(states)} ranks, odd ones out first; {where}"
    blocks = [render_group(group, details, len(states)) for group in groups]
    return fit(header, blocks, limit_bytes)


def fit(header: str, blocks: List[str], limit_bytes: int) -> str:
    """The header and as many whole blocks as fit; a first block too large is cut. Says what was left out."""
    kept, used = [header], size(header)
    for i, block in enumerate(blocks):
        left_out = len(blocks) - i
        note = f"[report cut at {limit_bytes} bytes: {left_out} more stack group(s) in the full dump]"
        if used + 1 + size(block) + 1 + size(note) <= limit_bytes or (i == len(blocks) - 1 and
                                                                        used + 1 + size(block) <= limit_bytes):
            kept.append(block)
            used += 1 + size(block)
            continue
        if i == 0:  # not even the likeliest culprit's group fits: show its start
            note = f"[report cut at {limit_bytes} bytes: this group's stack and {left_out - 1} more group(s) " \
                   "in the full dump]"
            room = max(0, limit_bytes - used - size(note) - 2)
            kept.append(block.encode()[:room].decode(errors="ignore"))
        kept.append(note)
        break
    return "\n".join(kept)


def full_dump(states: Sequence[RankState]) -> str:
    """Every rank's stack, in rank order (for the file the report names)."""
    return "\n\n".join(f"rank {s.rank} ({s.detail})\n{indent(s.stack)}" for s in sorted(states, key=lambda s: s.rank))


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def size(text: str) -> int:
    return len(text.encode())
