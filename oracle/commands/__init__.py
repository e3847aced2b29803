"""Typer command functions that live beside their domain; mounted in :mod:`oracle.cli`."""
