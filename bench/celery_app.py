"""The Celery app of the benchmark: the same no-op and sleeping tools."""

import os
import time

from celery import Celery

_redis = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")
app = Celery("bench", broker=f"{_redis}/0", backend=f"{_redis}/1")
app.conf.update(
    task_ignore_result=False,
    result_expires=600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop() -> int:
    return time.time_ns()


@app.task(name="sleep")
def sleep(ms: int, id: int) -> dict:
    time.sleep(ms / 1000)
    return {"id": id, "t": time.time_ns()}
