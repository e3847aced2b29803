"""Disposition reports: one shipment's record for the QA person who decides what happens to the goods.

:mod:`~oracle.disposition.content` assembles the record from the database and the content store (pure
of wall-clock time, so the same record always has the same SHA-256); :mod:`~oracle.disposition.html` and
:mod:`~oracle.disposition.pdf` render it with its sign-offs; :mod:`~oracle.disposition.signoffs` records
electronic signatures in the manner of 21 CFR Part 11 (§11.50 printed name, time and meaning; §11.70 bound
to the content hash; §11.200 two identification components) in a hash-chained log.
"""
