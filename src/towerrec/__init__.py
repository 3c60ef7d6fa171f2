"""towerrec: neural two-tower and classical recommenders with trustworthy full-ranking evaluation."""
from __future__ import annotations

__version__ = "0.1.0"
