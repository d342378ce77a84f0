"""`tokenwatch run`: the streaming service (Kafka consumer group → detection → sinks).

``runner.Service`` is the loop, ``partitions`` the per-partition engines and
their changelog restore, ``checkpoint`` the flush → changelog → commit step,
``config.ServiceConfig`` the service's own settings.
"""
