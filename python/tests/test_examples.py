"""The examples in examples/python/ run against the real server; the AWS ones
against moto's server mode on a loopback port (never the real cloud)."""

from __future__ import annotations

import io
import json
import os
import queue
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from typing import Optional

import pytest

from errand import Client, TaskStatus

from .conftest import EVENT_TIMEOUT, REPO, Collector, unique

EXAMPLES = REPO / "examples" / "python"


def run_example(name: str, env: dict[str, str], timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout


def test_research_agent_end_to_end(server: str) -> None:
    out = run_example(
        "research_agent.py",
        {"ERRAND_SERVER": server, "RESEARCH_SECONDS": "0.5", "RESEARCH_TIMEOUT": "60"},
    )
    assert "findings: Findings about tides... | Findings about volcanoes..." in out
    assert out.count("tool   > research_topic") == 2
    assert "2 + 2 = 4" in out  # the agent kept talking while the tools ran
    assert "Results are in: task" in out
    assert "[delivered]" in out


def test_the_seed_program_as_written(server: str) -> None:
    out = run_example(
        "seed_agent.py",
        {"ERRAND_SERVER": server, "RESEARCH_SECONDS": "0.5", "RESEARCH_TIMEOUT": "60"},
    )
    assert out.count("tool  -> Task ") == 2  # both calls answered at once with an ack
    assert "agent -> 2 + 2 = 4." in out  # the agent kept talking meanwhile
    assert "all findings in" in out
    first_ack = out.index("tool  -> Task ")
    assert out.index("Findings about tides...") > first_ack


class ExampleWorker:
    """An example file run as a worker process, ready once it prints its line."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / name)],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[Optional[str]] = queue.Queue()
        stdout = self.proc.stdout
        assert stdout is not None

        def pump() -> None:
            for line in stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        try:
            line = lines.get(timeout=EVENT_TIMEOUT)
        except queue.Empty:
            line = None
        if not line or not line.startswith("serving"):
            self.stop()
            stderr = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"{name} did not start: {line!r}\n{stderr}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="module")
def aws_env() -> Iterator[dict[str, str]]:
    """moto's server on a free loopback port, with the seed's Lambda and table."""
    pytest.importorskip("moto.server")
    import boto3
    import requests
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }
    # Lambda without Docker: moto's simple backend answers invocations itself.
    requests.post(
        f"{endpoint}/moto-api/config", json={"lambda": {"use_docker": False}}, timeout=10
    ).raise_for_status()
    session = boto3.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    iam = session.client("iam", endpoint_url=endpoint)
    role = iam.create_role(
        RoleName="slow-api-role",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as zf:
        zf.writestr("handler.py", "def handler(event, context):\n    return event\n")
    session.client("lambda", endpoint_url=endpoint).create_function(
        FunctionName="slow-api-function",
        Runtime="python3.11",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
    )
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    dynamodb.create_table(
        TableName="slow-query-table",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(
        TableName="slow-query-table",
        Item={
            "id": {"S": "order-42"},
            "status": {"S": "shipped"},
            "carrier": {"S": "ups"},
            "parcels": {"N": "3"},
            "weight_kg": {"N": "2.5"},
        },
    )
    yield env
    moto.stop()


def test_aws_lambda_and_dynamodb_tools_against_moto(
    server: str, aws_env: dict[str, str], client: Client, collect: object
) -> None:
    env = {**aws_env, "ERRAND_SERVER": server}
    workers = [
        ExampleWorker("aws_lambda_tool.py", env),
        ExampleWorker("aws_dynamodb_tool.py", env),
    ]
    try:
        assert callable(collect)
        stream: Collector = collect(client.completions())
        api = client.submit("call_api", endpoint="/slow/report")
        found = client.submit("query_database", key="order-42")
        missing = client.submit("query_database", key=unique("no-such-key"))
        by_id = {c.task_id: c for c in stream.take(3)}

        # InvocationType='RequestResponse': the function's own answer (it echoes the event).
        assert by_id[api.task_id].status == TaskStatus.SUCCEEDED
        assert json.loads(by_id[api.task_id].result) == {"endpoint": "/slow/report"}

        assert by_id[found.task_id].status == TaskStatus.SUCCEEDED
        assert json.loads(by_id[found.task_id].result) == {
            "id": "order-42",
            "status": "shipped",
            "carrier": "ups",
            "parcels": 3,  # DynamoDB's Decimal numbers, as JSON numbers
            "weight_kg": 2.5,
        }
        # The seed's code reads response['Item'] unguarded: a missing key fails the task.
        failed = by_id[missing.task_id]
        assert failed.status == TaskStatus.FAILED
        assert failed.error is not None and "KeyError" in failed.error.message
    finally:
        for worker in workers:
            worker.stop()
