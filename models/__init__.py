"""Pure computation: drought indices, cold-chain rules, features and LightGBM models. No I/O here."""
