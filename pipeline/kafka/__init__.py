"""Kafka plumbing: connection settings, the message-key rule, producing and topic creation.

``pipeline.kafka.config`` holds the ``[kafka]`` settings and the client arguments,
``pipeline.kafka.keys`` the key rule (see its docstring); the service (``tokenwatch run``)
builds on these pieces. Nothing is re-exported here: the settings loader imports
``pipeline.kafka.config``, which must not load the rest of the package with it.
"""
