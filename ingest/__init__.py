"""Readers and workers that turn outside data (rasters, weather feeds, MQTT telemetry) into observations."""
