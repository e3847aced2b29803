"""Cold-chain computation: product profiles, mean kinetic temperature, rules, simulator, breach model.

Pure computation: numpy, pandas, lightgbm and PyYAML only. The one import from the service is
``oracle.errors`` for the exception tree.
"""
