"""The standard library's value types as tool arguments: one JSON form each.

datetime/date/time (ISO 8601 text), timedelta (seconds), UUID (text),
Decimal (a number, or text when a float would lose its digits), Path (text),
dataclasses and TypedDicts (objects of their fields): a JSON Schema for the
model, the same form sent by a submit (client or manager), and the type
built back by the worker. The frameworks' own decorators take these types,
so `@async_tool` must too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import pathlib
import sys
import uuid
from typing import Annotated, Any, Callable, Literal, Optional, Union

import pytest

from errand import Client, TaskFailed, Worker, async_tool, schema_for_function, schema_for_type
from errand._coerce import coerce
from errand._jsonable import encode
from errand.tool import tool_def

from .conftest import unique

if sys.version_info >= (3, 11):
    from typing import NotRequired, TypedDict
else:  # pragma: no cover
    from typing_extensions import NotRequired, TypedDict


@dataclasses.dataclass
class Window:
    start: dt.datetime
    length: dt.timedelta
    label: str = "default"
    tags: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Booking:
    id: uuid.UUID
    window: Window
    price: decimal.Decimal
    notes: Optional[str] = None


class Place(TypedDict):
    city: str
    on: dt.date
    floor: NotRequired[int]


WHEN = dt.datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=dt.timezone.utc)
ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


@dataclasses.dataclass
class Hold:
    span: Annotated[dt.timedelta, "the hold's length"]


def test_a_parameters_own_description_keeps_the_types_note() -> None:
    """Annotated[timedelta, "how long to wait"] must still tell the model the
    unit: the parameter's text first, then the type's note (review item 5:
    the text replaced the note)."""

    def wait(
        pause: Annotated[dt.timedelta, "how long to wait"],
        maybe: Annotated[Optional[dt.timedelta], "a second pause"],
        pair: Annotated[tuple[int, str], "a count and a name"],
        when: Annotated[dt.datetime, "when to start"],
        hold: Hold,
    ) -> None:
        pass

    props = schema_for_function(wait)["properties"]
    assert props["pause"] == {
        "type": "number",
        "description": "how long to wait (a duration in seconds)",
    }
    # A union keeps the member's own note inside it; the parameter's text outside.
    assert props["maybe"]["description"] == "a second pause"
    assert props["maybe"]["anyOf"][0]["description"] == "a duration in seconds"
    assert props["pair"]["description"] == (
        "a count and a name (a tuple, in this order: integer, string)"
    )
    assert props["when"] == {
        "type": "string",
        "format": "date-time",
        "description": "when to start",
    }
    assert props["hold"]["properties"]["span"]["description"] == (
        "the hold's length (a duration in seconds)"
    )


def test_each_type_has_a_schema() -> None:
    assert schema_for_type(dt.datetime) == {"type": "string", "format": "date-time"}
    assert schema_for_type(dt.date) == {"type": "string", "format": "date"}
    assert schema_for_type(dt.time) == {"type": "string", "format": "time"}
    assert schema_for_type(uuid.UUID) == {"type": "string", "format": "uuid"}
    assert schema_for_type(pathlib.Path) == {"type": "string", "format": "path"}
    assert schema_for_type(decimal.Decimal)["type"] == ["number", "string"]
    assert schema_for_type(dt.timedelta)["type"] == "number"
    assert "seconds" in schema_for_type(dt.timedelta)["description"]
    assert schema_for_type(Optional[dt.date]) == {
        "anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]
    }

    window = schema_for_type(Window)
    assert window["type"] == "object" and window["additionalProperties"] is False
    assert window["required"] == ["start", "length"]
    assert window["properties"]["start"] == {"type": "string", "format": "date-time"}
    assert window["properties"]["label"] == {"type": "string", "default": "default"}
    assert window["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}
    booking = schema_for_type(Booking)
    assert booking["properties"]["window"] == window
    assert booking["required"] == ["id", "window", "price"]

    place = schema_for_type(Place)
    assert place["type"] == "object"
    assert set(place["required"]) == {"city", "on"}
    assert place["properties"]["floor"] == {"type": "integer"}
    assert place["properties"]["on"] == {"type": "string", "format": "date"}


def test_a_function_with_them_has_a_schema() -> None:
    def book(
        when: dt.datetime,
        booking: Booking,
        place: Place,
        mode: Literal["fast", "slow"] = "fast",
        day: dt.date = dt.date(2024, 1, 2),
    ) -> str:
        return ""

    schema = schema_for_function(book)
    assert schema["required"] == ["when", "booking", "place"]
    assert schema["properties"]["day"] == {
        "type": "string",
        "format": "date",
        "default": "2024-01-02",
    }


def test_the_submit_side_sends_the_form_the_worker_reads() -> None:
    values = {
        "when": WHEN,
        "day": dt.date(2024, 5, 1),
        "at": dt.time(9, 5, 0),
        "for": dt.timedelta(minutes=90, milliseconds=500),
        "whole": dt.timedelta(hours=1),
        "id": ID,
        "price": decimal.Decimal("12.50"),
        "big": decimal.Decimal("12345678901234567890.123456789"),
        "path": pathlib.PurePosixPath("/data/in.csv"),
    }
    sent = json.loads(encode(values, "argument"))
    assert sent == {
        "when": "2024-05-01T12:30:15.250000+00:00",
        "day": "2024-05-01",
        "at": "09:05:00",
        "for": 5400.5,
        "whole": 3600,
        "id": "12345678-1234-5678-1234-567812345678",
        "price": 12.5,
        "big": "12345678901234567890.123456789",
        "path": "/data/in.csv",
    }
    hints = {
        "when": dt.datetime,
        "day": dt.date,
        "at": dt.time,
        "for": dt.timedelta,
        "whole": dt.timedelta,
        "id": uuid.UUID,
        "price": decimal.Decimal,
        "big": decimal.Decimal,
        "path": pathlib.PurePosixPath,
    }
    back = {k: coerce(hints[k], v) for k, v in sent.items()}
    assert back == values
    assert type(back["price"]) is decimal.Decimal and back["price"] == decimal.Decimal("12.5")

    booking = Booking(ID, Window(WHEN, dt.timedelta(seconds=30)), decimal.Decimal("3"))
    assert coerce(Booking, json.loads(encode(booking, "argument"))) == booking
    place: Place = {"city": "Oslo", "on": dt.date(2024, 5, 1)}
    assert coerce(Place, json.loads(encode(place, "argument"))) == place


@pytest.mark.parametrize(
    ("hint", "given", "expected"),
    [
        (dt.datetime, "2024-05-01T12:00:00Z", dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)),
        (dt.datetime, "2024-05-01T12:00:00", dt.datetime(2024, 5, 1, 12)),
        (dt.timedelta, 1.5, dt.timedelta(seconds=1.5)),
        (decimal.Decimal, 0.1, decimal.Decimal("0.1")),
        (decimal.Decimal, "0.10", decimal.Decimal("0.10")),
        (decimal.Decimal, 3, decimal.Decimal(3)),
        (Optional[dt.date], None, None),
        (list[uuid.UUID], [str(ID)], [ID]),
        (dict[dt.date, int], {"2024-05-01": 3}, {dt.date(2024, 5, 1): 3}),
        (Union[int, dt.date], "2024-05-01", dt.date(2024, 5, 1)),
        (Union[dt.date, str], "2024-05-01", "2024-05-01"),  # text is text exactly
        (Union[dt.date, str], "soon", "soon"),
    ],
)
def test_the_worker_builds_each_from_json(hint: Any, given: Any, expected: Any) -> None:
    got = coerce(hint, given)
    assert got == expected
    assert type(got) is type(expected)


def test_dict_keys_of_these_types_go_as_text() -> None:
    assert json.loads(encode({dt.date(2024, 5, 1): 1, ID: 2}, "result")) == {
        "2024-05-01": 1,
        str(ID): 2,
    }


@pytest.mark.parametrize(
    ("hint", "given", "says"),
    [
        (dt.datetime, "yesterday", "yesterday"),
        (dt.date, 20240501, "date"),
        (uuid.UUID, "nope", "nope"),
        (decimal.Decimal, "ten", "ten"),
        (decimal.Decimal, True, "True"),
        (dt.timedelta, "PT1M", "seconds"),
        (dt.timedelta, 1e300, "too long"),
        (Window, {"start": WHEN.isoformat()}, "length"),
        (Window, {"start": WHEN.isoformat(), "length": 1, "colour": "red"}, "colour"),
        (Window, "a window", "Window"),
    ],
)
def test_a_value_that_does_not_fit_is_refused_naming_it(hint: Any, given: Any, says: str) -> None:
    with pytest.raises((ValueError, TypeError), match=says):
        coerce(hint, given)


def test_a_worker_gets_the_types_its_hints_name(
    client: Client, start_worker: Callable[..., Worker]
) -> None:
    @async_tool(name=unique("formats_probe"))
    def probe(
        when: dt.datetime,
        day: dt.date,
        length: dt.timedelta,
        id: uuid.UUID,
        price: decimal.Decimal,
        path: pathlib.Path,
        booking: Booking,
        place: Place,
        at: Optional[dt.time] = None,
    ) -> dict[str, Any]:
        """Reports what it received."""
        got = dict(locals())
        return {
            "types": {k: type(v).__name__ for k, v in got.items()},
            "window": type(booking.window.start).__name__,
            "place_on": type(place["on"]).__name__,
            "echo": got,
        }

    start_worker(probe)
    booking = Booking(
        ID, Window(WHEN, dt.timedelta(seconds=30), tags=["a"]), decimal.Decimal("9.99")
    )
    # As Python values (encoded by the submit), then as a model would write them.
    for args in (
        dict(
            when=WHEN,
            day=dt.date(2024, 5, 1),
            length=dt.timedelta(seconds=90),
            id=ID,
            price=decimal.Decimal("12.50"),
            path=pathlib.Path("/tmp/x"),
            booking=booking,
            place={"city": "Oslo", "on": dt.date(2024, 5, 1)},
            at=dt.time(9, 30),
        ),
        dict(
            when="2024-05-01T12:30:15.25Z",
            day="2024-05-01",
            length=90.0,
            id=str(ID),
            price="12.50",
            path="/tmp/x",
            booking={
                "id": str(ID),
                "window": {"start": "2024-05-01T12:30:15Z", "length": 30, "tags": ["a"]},
                "price": 9.99,
            },
            place={"city": "Oslo", "on": "2024-05-01"},
            at="09:30:00",
        ),
    ):
        result = client.submit(tool_def(probe).name, wait=True, **args)
        assert result["types"] == {
            "when": "datetime",
            "day": "date",
            "length": "timedelta",
            "id": "UUID",
            "price": "Decimal",
            "path": "PosixPath",
            "booking": "Booking",
            "place": "dict",
            "at": "time",
        }
        assert result["window"] == "datetime" and result["place_on"] == "date"
        echo = result["echo"]
        assert echo["length"] == 90 and echo["price"] == 12.5 and echo["id"] == str(ID)
        assert echo["booking"]["window"]["length"] == 30


def test_a_bad_date_fails_the_call_as_invalid_arguments(
    client: Client, start_worker: Callable[..., Worker]
) -> None:
    @async_tool(name=unique("formats_refuse"))
    def on_day(day: dt.date) -> str:
        """Takes a day."""
        return day.isoformat()

    start_worker(on_day)
    with pytest.raises(TaskFailed) as failed:
        client.submit(tool_def(on_day).name, day="next tuesday", wait=True)
    assert (failed.value.status, failed.value.code) == ("FAILED", "invalid_arguments")
    assert "next tuesday" in failed.value.message
