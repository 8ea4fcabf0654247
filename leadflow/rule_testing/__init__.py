"""Rule unit tests (``leadflow test``): YAML files of given state, steps and expected actions.

``spec`` reads a test file, ``given`` writes its state into a fresh store, ``runner`` moves a
simulated clock through the steps, ``observed`` reads back what the engine did, ``actions``
compares it with what was expected, ``report`` prints it for people and CI systems.
"""
