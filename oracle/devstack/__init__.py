"""The embedded development stack of ``make run``: a local mosquitto (``broker``), a local anvil chain
with the contracts deployed and dev keys (``localchain``), and the demo scenario (``demo``). Production
points the service at its own broker, chain and keys instead; nothing outside development needs these."""
