"""The job plane: datasets and training jobs as a service, on a durable queue.

``dataset_catalog`` stores and inspects uploaded datasets; ``submit`` checks and queues a
training job; ``worker`` claims jobs (``modelbay worker``, or the ones ``modelbay serve``
starts) and runs each in a process of its own (``runner``), which trains, checkpoints every
epoch and registers the model.
"""
