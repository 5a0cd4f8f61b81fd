#!/usr/bin/env python3
"""The seed text's second AWS example, a DynamoDB get_item as an async tool.

As written in the seed apart from the import line, `import json` (which the
seed's snippet uses without importing) and one fix for real tables: DynamoDB
returns numbers as `Decimal`, which `json.dumps` refuses, so they are turned
into ints or floats. Run it as a worker:

    ERRAND_SERVER=127.0.0.1:7466 python examples/python/aws_dynamodb_tool.py

boto3 finds the region, credentials and endpoint the usual way; against a
local AWS stand-in (moto's server) set AWS_ENDPOINT_URL.
"""

import json
from decimal import Decimal

import boto3

from errand import AsyncToolManager, async_tool

dynamodb = boto3.resource('dynamodb')
table = dynamodb.Table('slow-query-table')
manager = AsyncToolManager(max_workers=4)

@async_tool(manager)
def query_database(key: str) -> str:
    """Query a database and return the result."""
    response = table.get_item(Key={'id': key})
    return json.dumps(response['Item'], default=decimal_to_number)


def decimal_to_number(value):
    """DynamoDB numbers (Decimal) as JSON numbers."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


if __name__ == "__main__":
    manager.start()
    print(f"serving query_database at {manager.target}", flush=True)
    manager.join()
