"""Assemble one region-month feature row for the severity model from the drought indices.

The caller (the evaluation job) extracts region means from rasters and feeds, then calls
:func:`region_features`; everything here is pure arithmetic on those numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from models.drought.dry_spell import longest_dry_spell
from models.drought.features import FEATURES
from models.drought.soil_moisture import soil_moisture_percentile
from models.drought.spi import Calibration, spi
from models.drought.vegetation import (
    ndvi_anomaly,
    temperature_condition_index,
    vegetation_condition_index,
    vegetation_health_index,
)
from models.errors import ValidationError


@dataclass(frozen=True)
class RegionObservations:
    """Region-mean inputs for the month being scored (the last month of ``monthly_precip_mm``).

    ``monthly_precip_mm``: monthly totals (mm) up to and including that month, starting at
    ``start_year``/``start_month``; ``daily_precip_mm``: the month's daily totals (mm);
    ``ndvi`` and ``ndvi_history`` (the same month in past years); ``lst_c`` and ``lst_history_c``
    (land-surface temperature, °C, same month in past years); ``soil_moisture`` and
    ``soil_moisture_history`` (same unit, same month in past years).
    """

    monthly_precip_mm: npt.ArrayLike
    start_year: int
    start_month: int
    daily_precip_mm: npt.ArrayLike
    ndvi: float
    ndvi_history: npt.ArrayLike
    lst_c: float
    lst_history_c: npt.ArrayLike
    soil_moisture: float
    soil_moisture_history: npt.ArrayLike


def region_features(obs: RegionObservations, *, calibration: Calibration = None) -> pd.DataFrame:
    """One-row frame with the model's ``FEATURES`` for the last month of ``obs.monthly_precip_mm``.

    :raises ValidationError: empty inputs or any error from the underlying indices.
    """
    precip = np.asarray(obs.monthly_precip_mm, dtype=np.float64)
    ndvi_past = np.asarray(obs.ndvi_history, dtype=np.float64)
    lst_past = np.asarray(obs.lst_history_c, dtype=np.float64)
    if precip.size == 0 or ndvi_past.size == 0 or lst_past.size == 0:
        raise ValidationError("region features need precipitation, NDVI and LST history", reason="empty")
    spis = {
        scale: float(
            spi(
                precip,
                scale=scale,
                calibration=calibration,
                start_year=obs.start_year,
                start_month=obs.start_month,
            )[-1]
        )
        for scale in (1, 3, 6)
    }
    # Kogan's extremes are over the whole record, the scored year included, so VCI and TCI stay in 0…100.
    ndvi_all = np.append(ndvi_past, obs.ndvi)
    lst_all = np.append(lst_past, obs.lst_c)
    vci = vegetation_condition_index(obs.ndvi, np.nanmin(ndvi_all), np.nanmax(ndvi_all))
    tci = temperature_condition_index(obs.lst_c, np.nanmin(lst_all), np.nanmax(lst_all))
    month = (obs.start_month - 1 + precip.size - 1) % 12 + 1
    row = {
        "spi_1": spis[1],
        "spi_3": spis[3],
        "spi_6": spis[6],
        "vhi": float(vegetation_health_index(vci, tci)),
        "ndvi_anomaly": float(ndvi_anomaly(obs.ndvi, ndvi_past)),
        "dry_spell_days": float(longest_dry_spell(obs.daily_precip_mm)),
        "sm_percentile": float(soil_moisture_percentile(obs.soil_moisture, obs.soil_moisture_history)),
        "lst_anomaly_c": float(obs.lst_c - np.nanmean(lst_past)),
        "month": float(month),
    }
    return pd.DataFrame([row], columns=list(FEATURES))
