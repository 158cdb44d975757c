"""Training as a service: datasets, model families, the training loop and its export.

Importable without the server stack (numpy, torch, pandas/pyarrow, Pillow); the job plane
(``modelbay.jobs``) runs it in a process of its own.
"""
