"""The operators' HTTP API (FastAPI)."""
