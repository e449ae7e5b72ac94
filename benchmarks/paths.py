"""Where the checkout is: the benchmark runs the repository's own tools and configs."""
from __future__ import annotations

import os.path as osp

#: the repository root (this folder's parent)
REPO_ROOT: str = osp.dirname(osp.dirname(osp.abspath(__file__)))
