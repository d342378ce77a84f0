"""One background job on an interval: how the executor retries revocations and the notifier
delivers (APScheduler, one thread, never two runs at once, the first run now)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler


def start_interval_job(job: Callable[[], None], every_s: float, job_id: str) -> BackgroundScheduler:
    """Run ``job`` every ``every_s`` seconds from now on a background thread; the caller
    shuts the returned scheduler down."""
    scheduler = BackgroundScheduler(timezone=timezone.utc)
    scheduler.add_job(job, "interval", seconds=every_s, id=job_id, max_instances=1, coalesce=True,
                      next_run_time=datetime.now(timezone.utc))
    scheduler.start()
    return scheduler
