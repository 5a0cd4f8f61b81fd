"""errand's Python worker for the benchmark: a no-op tool, served four ways.

- `sdk-thread`: the SDK's `Worker` with a plain function (runs on its thread pool);
- `sdk-async`: the SDK's `Worker` with an `async def` tool (runs on its event loop);
- `bare`: a bare `grpc.aio` bidi loop on the generated stubs, the floor the SDK
  is measured against: register, then a reader answers each assignment at once
  onto a queue that a writer sends, so reads and writes overlap as in the SDK;
- `bare-serial`: the same loop without the overlap (read one, await its write,
  read the next). Not the floor: it waits a round trip per write, and did
  fewer tasks/s than the SDK (2,200-3,900 against ~5,600-6,800 pipelined,
  same box and run), so the SDK was measured against `bare` instead.

Each answers with the send time in Unix nanoseconds, for delivery latency.
"""

import argparse
import asyncio
import json
import signal
import threading
import time

import grpc.aio
from errand import Worker, async_tool
from errand.v1 import errand_pb2 as pb
from errand.v1 import errand_pb2_grpc as pb_grpc


@async_tool(name="noop")
def noop(i: int = 0) -> dict:
    """Answers at once with the send time in Unix nanoseconds (`i` numbers the call)."""
    return {"t": time.time_ns()}


@async_tool(name="noop")
async def noop_async(i: int = 0) -> dict:
    """`noop` as a coroutine, run on the worker's event loop."""
    return {"t": time.time_ns()}


async def bare_serial(addr: str, concurrency: int, max_secs: float) -> None:
    """The bare loop, one message at a time: one Connect stream, no SDK."""
    async with grpc.aio.insecure_channel(addr) as channel:
        call = pb_grpc.WorkerServiceStub(channel).Connect()
        tool = pb.Tool(name="noop", description="no-op", input_schema_json='{"type":"object"}')
        hello = pb.Register(worker_name="bare", tools=[tool], max_concurrency=concurrency)
        await call.write(pb.WorkerMessage(register=hello))
        stop = asyncio.get_running_loop().time() + max_secs
        while asyncio.get_running_loop().time() < stop:
            msg = await call.read()
            if msg is grpc.aio.EOF:
                return
            if msg.WhichOneof("kind") == "assignment":
                a = msg.assignment
                json.loads(a.arguments_json or "{}")  # as any tool must
                out = json.dumps({"t": time.time_ns()})
                result = pb.TaskResult(task_id=a.task_id, attempt=a.attempt, result_json=out)
                await call.write(pb.WorkerMessage(result=result))


async def bare(addr: str, concurrency: int, max_secs: float) -> None:
    """The bare loop: one Connect stream, no SDK; a reader answers each
    assignment onto a queue, a writer sends what is queued."""
    async with grpc.aio.insecure_channel(addr) as channel:
        call = pb_grpc.WorkerServiceStub(channel).Connect()
        tool = pb.Tool(name="noop", description="no-op", input_schema_json='{"type":"object"}')
        hello = pb.Register(worker_name="bare", tools=[tool], max_concurrency=concurrency)
        await call.write(pb.WorkerMessage(register=hello))
        out: asyncio.Queue[pb.WorkerMessage] = asyncio.Queue()

        async def writer() -> None:
            while True:
                await call.write(await out.get())

        w = asyncio.ensure_future(writer())
        stop = asyncio.get_running_loop().time() + max_secs
        while asyncio.get_running_loop().time() < stop:
            msg = await call.read()
            if msg is grpc.aio.EOF:
                break
            if msg.WhichOneof("kind") == "assignment":
                a = msg.assignment
                json.loads(a.arguments_json or "{}")  # as any tool must
                out_json = json.dumps({"t": time.time_ns()})
                result = pb.TaskResult(task_id=a.task_id, attempt=a.attempt, result_json=out_json)
                out.put_nowait(pb.WorkerMessage(result=result))
        w.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-secs", type=float, default=3600)
    parser.add_argument("--mode", choices=["sdk-thread", "sdk-async", "bare", "bare-serial"], default="sdk-thread")
    args = parser.parse_args()
    if args.mode == "bare":  # SIGTERM's default action ends it
        asyncio.run(bare(args.addr, args.concurrency, args.max_secs))
        return
    if args.mode == "bare-serial":
        asyncio.run(bare_serial(args.addr, args.concurrency, args.max_secs))
        return
    tool = noop_async if args.mode == "sdk-async" else noop
    worker = Worker(args.addr, tools=[tool], max_concurrency=args.concurrency, name="bench-py")
    signal.signal(signal.SIGTERM, lambda *_: worker.stop(timeout=None))
    timer = threading.Timer(args.max_secs, lambda: worker.stop(timeout=None))
    timer.daemon = True
    timer.start()
    worker.run()


if __name__ == "__main__":
    main()
