"""The data plane: references resolved, deployments run, the inference path.

Import from the modules (``modelbay.serving.inference`` ...): this package imports
nothing itself, so a replica or the zygote loads only what it runs.
"""
