"""The drought severity model's feature set and label scale, shared by training and scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.errors import ValidationError

#: Model inputs, in the order the booster was trained on. Units: SPI and NDVI anomaly are unitless
#: z-scores; ``vhi`` 0…100 (lower = worse); ``dry_spell_days`` the longest run of days < 1 mm in the
#: month; ``sm_percentile`` 0…100; ``lst_anomaly_c`` land-surface temperature minus its
#: climatological mean for the month, °C; ``month`` 1…12 (seasonality).
FEATURES: tuple[str, ...] = (
    "spi_1",
    "spi_3",
    "spi_6",
    "vhi",
    "ndvi_anomaly",
    "dry_spell_days",
    "sm_percentile",
    "lst_anomaly_c",
    "month",
)

#: US Drought Monitor classes; the position is the severity level k used in the expected score,
#: so the score runs 0 (none) … 5 (D4) as in ``oracle.reports`` DROUGHT_SEVERITY.
CLASSES: tuple[str, ...] = ("none", "D0", "D1", "D2", "D3", "D4")

_RANGES: dict[str, tuple[float, float]] = {
    "spi_1": (-3.09, 3.09),
    "spi_3": (-3.09, 3.09),
    "spi_6": (-3.09, 3.09),
    "vhi": (-50.0, 150.0),  # VCI/TCI may leave 0…100 on record years; beyond this it is a unit error
    "ndvi_anomaly": (-10.0, 10.0),
    "dry_spell_days": (0.0, 31.0),
    "sm_percentile": (0.0, 100.0),
    "lst_anomaly_c": (-30.0, 30.0),
    "month": (1.0, 12.0),
}


def feature_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's feature columns of ``frame`` as float64, in training order.

    NaN is allowed (a missing satellite pass): LightGBM routes missing values along the branch it
    learned. Anything else outside the documented ranges is refused.

    :raises ValidationError: a feature column is missing, non-numeric, infinite or out of range
        (``reason`` = "missing_feature", "not_numeric" or "out_of_range").
    """
    missing = [name for name in FEATURES if name not in frame.columns]
    if missing:
        raise ValidationError(f"missing feature columns: {', '.join(missing)}", reason="missing_feature")
    out = pd.DataFrame(index=frame.index)
    for name in FEATURES:
        try:
            column = pd.to_numeric(frame[name], errors="raise").astype("float64")
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"feature {name} is not numeric", reason="not_numeric") from exc
        values = column.to_numpy()
        low, high = _RANGES[name]
        finite = values[~np.isnan(values)]
        if finite.size and (not np.all(np.isfinite(finite)) or finite.min() < low or finite.max() > high):
            raise ValidationError(
                f"feature {name} has values outside [{low}, {high}] (wrong unit?)", reason="out_of_range"
            )
        out[name] = column
    return out


def class_codes(labels: pd.Series) -> np.ndarray:
    """USDM labels ("none", "D0"…"D4", or integers 0…5) as integer codes 0…5.

    :raises ValidationError: any other label (``reason`` = "bad_label").
    """
    lookup: dict[str, int] = {name.lower(): code for code, name in enumerate(CLASSES)}
    lookup.update({str(code): code for code in range(len(CLASSES))})
    codes = []
    for raw in labels.tolist():
        key = str(raw).strip().lower()
        if key.endswith(".0"):
            key = key[:-2]
        if key not in lookup:
            raise ValidationError(f"usdm_class {raw!r} is not one of none, D0…D4 or 0…5", reason="bad_label")
        codes.append(lookup[key])
    return np.asarray(codes, dtype=np.int64)
