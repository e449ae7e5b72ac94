"""What ``torch.compile`` did so far: graphs compiled, graph breaks, their reasons.

Read from dynamo's process-wide counters (``torch._dynamo.utils.counters``), so
it sees every compiled region, whatever the backend (``inductor`` on a GPU,
``eager`` / ``aot_eager`` in CPU tests). Two snapshots bracket a stretch of
training: frames compiled between them after the first step are recompiles.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DynamoCounts:
    """A snapshot of dynamo's counters.

    Attributes:
        frames: frames dynamo compiled (each first compile and each recompile).
        graph_breaks: places where a compiled region was cut (``graph_break``
            and ``unimplemented`` counters: a user break, an untraceable call,
            a data-dependent branch ...).
        reasons: the first line of each graph break's reason, with its count.
    """
    frames: int = 0
    graph_breaks: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def __sub__(self, other: 'DynamoCounts') -> 'DynamoCounts':
        reasons = {k: v - other.reasons.get(k, 0) for k, v in self.reasons.items()}
        return DynamoCounts(self.frames - other.frames,
                            self.graph_breaks - other.graph_breaks,
                            {k: v for k, v in reasons.items() if v > 0})

    def as_dict(self) -> dict:
        return dict(frames=self.frames, graph_breaks=self.graph_breaks,
                    reasons=dict(self.reasons))


def dynamo_counts() -> DynamoCounts:
    """The counters now (all zero before anything was compiled)."""
    from torch._dynamo.utils import counters
    reasons: dict[str, int] = {}
    for kind in ('graph_break', 'unimplemented'):
        for reason, n in counters.get(kind, {}).items():
            first = str(reason).strip().splitlines()[0] if str(reason).strip() else kind
            reasons[first] = reasons.get(first, 0) + int(n)
    return DynamoCounts(frames=int(counters.get('frames', {}).get('total', 0)),
                        graph_breaks=sum(reasons.values()), reasons=reasons)
