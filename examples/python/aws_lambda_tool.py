#!/usr/bin/env python3
"""The seed text's first AWS example, a Lambda invoke as an async tool.

As written in the seed apart from the import line, `import json` (which the
seed's snippet uses without importing) and one fix for real AWS: the seed
invokes with InvocationType='Event', which answers 202 with an empty payload
and never the function's result. errand already makes the call asynchronous,
so the tool invokes with 'RequestResponse' and returns what the function
returned. Run it as a worker:

    ERRAND_SERVER=127.0.0.1:7466 python examples/python/aws_lambda_tool.py

boto3 finds the region, credentials and endpoint the usual way; against a
local AWS stand-in (moto's server) set AWS_ENDPOINT_URL.
"""

import json

import boto3

from errand import AsyncToolManager, async_tool

lambda_client = boto3.client('lambda')
manager = AsyncToolManager(max_workers=4)

@async_tool(manager)
def call_api(endpoint: str) -> str:
    """Call a slow API and return the result."""
    response = lambda_client.invoke(
        FunctionName='slow-api-function',
        InvocationType='RequestResponse',  # the seed's 'Event' returns no result
        Payload=json.dumps({"endpoint": endpoint})
    )
    return response['Payload'].read().decode('utf-8')


if __name__ == "__main__":
    manager.start()
    print(f"serving call_api at {manager.target}", flush=True)
    manager.join()
