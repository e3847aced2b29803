"""Chainlink compatibility: an external-adapter endpoint (``adapter``), direct requests through
Chainlink's own Operator contract (``setup``, ``requests``), and the task evaluation both share
(``tasks``)."""
