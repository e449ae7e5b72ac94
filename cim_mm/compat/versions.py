"""Version comparison for the fixes' guards."""
from __future__ import annotations

import re


def version_at_least(version: str, minimum: str) -> bool:
    """``'2.14.1+cu130' >= '2.6'``, on the leading numeric release parts."""
    def release(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r'\d+', v.split('+')[0])[:3])
    return release(version) >= release(minimum)
