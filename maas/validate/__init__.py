"""`maas validate`: every model in a repository checked against its config, served by a real
Triton, and (with `--runtime ngc-24.10`) run with the framework versions of NVIDIA's image.

Nothing is imported here: `ngc_probe.py` runs inside the NGC virtualenvs, which have neither
this project's dependencies nor its Python version.
"""
