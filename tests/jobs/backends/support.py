"""What the backend tests share."""
from __future__ import annotations

from jobs.manifest import Trial


def chained_trials(n: int, stages: int = 1) -> list[Trial]:
    """`n` trials per stage; trial i of stage s+1 has trial i of stage s as its parent."""
    out = []
    for s in range(stages):
        for i in range(n):
            parent = out[(s - 1) * n + i].id if s else None
            out.append(Trial(id=f"t{s}-{i}", index=s * n + i, stage=s, parent=parent))
    return out
