"""Scale-out of gridded work (zonal means, gridded SPI) on dask.distributed.

:mod:`oracle.scale.cluster` is the one boundary to Dask (which scheduler, started when, closed how);
:mod:`oracle.scale.gridded` maps the pure functions of ``ingest.zonal`` and ``models.drought.spi`` over
chunks, so that the distributed result is bit for bit the single-process one.
"""
