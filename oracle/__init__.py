"""AI oracle for parametric insurance and supply-chain triggers."""

__version__ = "0.1.0"
