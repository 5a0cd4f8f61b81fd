"""errand's Python worker for the benchmark: a no-op tool on the SDK's `Worker`."""

import argparse
import signal
import threading
import time

from errand import Worker, async_tool


@async_tool(name="noop")
def noop(i: int = 0) -> dict:
    """Answers at once with the send time in Unix nanoseconds (`i` numbers the call)."""
    return {"t": time.time_ns()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-secs", type=float, default=3600)
    args = parser.parse_args()
    worker = Worker(args.addr, tools=[noop], max_concurrency=args.concurrency, name="bench-py")
    signal.signal(signal.SIGTERM, lambda *_: worker.stop(timeout=None))
    timer = threading.Timer(args.max_secs, lambda: worker.stop(timeout=None))
    timer.daemon = True
    timer.start()
    worker.run()


if __name__ == "__main__":
    main()
