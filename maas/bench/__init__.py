"""Measuring the served models: `maas bench` (serving paths side by side), `tune-batching`,
the closed-loop load generator, and the soak judgement of `maas loadtest --soak`.

Nothing here runs in a game or in the server; the runtime lives in maas.server and
maas_backends.
"""
