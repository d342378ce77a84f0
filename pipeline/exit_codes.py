"""Exit codes of every ``tokenwatch`` command: one meaning each, so a supervisor
(systemd, Kubernetes, a script) can tell a typo from an outage without parsing text.
The README's "Exit codes" table lists them."""

from __future__ import annotations

OK = 0
FAILED = 1  # the command ran and something failed (lines not produced, store broken, alerts stored partly)
CONFIG = 2  # configuration or usage error: a setting or argument is wrong
NOT_FOUND = 3  # what the command works on does not exist (store file, topic) and it must not create it
KAFKA_UNREACHABLE = 4  # no broker answered at kafka.bootstrap_servers
PORT_IN_USE = 5  # service.metrics_port is taken (another instance on this host?)
ELASTICSEARCH_REFUSED = 6  # the Elasticsearch-API server refuses the client for good (e.g. the wrong flavour)
INTERRUPTED = 130  # what a shell reports for a command Ctrl-C ended: it dies by SIGINT (pipeline.cli.interrupt)
