"""Imports every module that defines tables, so ``Base.metadata`` is complete for Alembic and tests."""

from __future__ import annotations

import oracle.storage.signoff_tables  # noqa: F401 - disposition sign-offs
from oracle.storage import alarm_tables, api_tables, decision_tables, network_tables, tables  # noqa: F401 - they register tables
from oracle.storage.tables import Base

__all__ = ["Base", "decision_tables", "network_tables", "tables"]
