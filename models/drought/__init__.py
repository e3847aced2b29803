"""Drought indices (SPI, VCI/TCI/VHI, NDVI anomaly, dry spell, soil-moisture percentile) and the
LightGBM drought severity model. Pure computation: arrays and frames in, numbers out."""
