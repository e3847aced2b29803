# The broker fixtures live in tests/fixtures/mqtt.py so every test folder can use them; until the
# top-level conftest lists that module in `pytest_plugins`, import them here (pytest_plugins is
# only honoured in the rootdir conftest).
from tests.fixtures.mqtt import mosquitto, private_mosquitto

__all__ = ["mosquitto", "private_mosquitto"]
