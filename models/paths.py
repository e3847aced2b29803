"""Where the shipped artifacts live. Kept free of heavy imports so the CLI can name them cheaply."""

from __future__ import annotations

from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DROUGHT_MODEL_DIR = ARTIFACTS / "drought"
COLDCHAIN_MODEL_DIR = ARTIFACTS / "coldchain"
