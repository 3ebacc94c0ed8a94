"""Records from a JSON API (Socrata SODA rows) read through the same mappings as CSV files (streams.ingest.sources)."""

from __future__ import annotations

import json

import pytest

from streams.ingest.mapping import MappingError, parse_mapping
from streams.ingest.schema import parse_event
from streams.ingest.sources import FORMATS, Rejected, Row, UnknownFormat, cell_text, detect_format, parse_lines, parse_records

SODA_ROW = {
    "address": "1st Av / Pike St",
    "type": "Aid Response",
    "datetime": "2024-01-01T00:05:00.000",
    "latitude": "47.6062",
    "longitude": "-122.3321",
    "report_location": {"type": "Point", "coordinates": [-122.3321, 47.6062]},
    "incident_number": "F240001",
    ":id": "row-abcd.efgh",
    ":updated_at": "2024-01-01T08:07:12.000Z",
}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        ("  Medic Response ", "Medic Response"),
        (12, "12"),
        (-122.3321, "-122.3321"),
        (float("inf"), ""),
        (False, "false"),
        ({"type": "Point", "coordinates": [-122.3321, 47.6062]}, "POINT (-122.3321 47.6062)"),
        ({"type": "Point", "coordinates": []}, ""),
        ({"latitude": "47.6", "longitude": "-122.3", "human_address": '{"address": "x"}'}, "POINT (-122.3 47.6)"),
        ({"latitude": "", "longitude": ""}, ""),
        ({"url": "https://example.org/x"}, "https://example.org/x"),
        ([1, "a"], '[1,"a"]'),
    ],
)
def test_cell_text_turns_each_json_value_into_the_text_a_csv_cell_would_hold(value, text):
    """cell_text: null is empty, strings stripped, numbers as written, booleans lower-case, points as WKT, other objects as JSON."""
    assert cell_text(value) == text


def test_a_soda_point_is_read_by_a_mapping_with_location_form_point():
    """A GeoJSON point from the API becomes the WKT a mapping with location form "point" reads as (lat, lng)."""
    mapping = parse_mapping(
        """
        name = "soda-point"
        timezone = "America/Los_Angeles"
        [fields]
        id = "incident_number"
        received_at = "datetime"
        call_type = "type"
        location = { column = "report_location", form = "point" }
        """
    )
    (row,) = parse_records([SODA_ROW], mapping)
    assert isinstance(row, Row)
    assert (row.call["lat"], row.call["lng"]) == (47.6062, -122.3321)


def test_seattle_soda_rows_become_valid_calls_keyed_by_incident_number_without_the_address():
    """The seattle-fire-soda mapping reads API rows into schema-v1 calls whose id is incident_number and which carry no address."""
    second = {**SODA_ROW, "incident_number": "F240002", "type": "Motor Vehicle Incident"}
    rows = list(parse_records([SODA_ROW, second], "seattle-fire-soda"))
    assert [r.call["id"] for r in rows if isinstance(r, Row)] == ["F240001", "F240002"]
    first = rows[0]
    assert isinstance(first, Row)
    assert first.call["received_at"] == "2024-01-01T08:05:00Z"  # Seattle's wall clock, PST = UTC-8
    assert [r.call["category"] for r in rows if isinstance(r, Row)] == ["EMS", "TRAFFIC"]
    assert first.call["source"] == "seattle-fire-soda" and first.call["agency"] == "seattle-fd"
    assert "Pike" not in json.dumps(first.call)
    assert json.loads(first.raw) == SODA_ROW  # the record as received, for the dead-letter topic
    assert parse_event(json.dumps(first.call).encode(), now=2e9).event.id == "F240001"


def test_records_and_the_same_data_as_csv_give_the_same_calls():
    """A record and the CSV line holding the same values go through one engine and give the same call (one code path)."""
    header = b"address,type,datetime,latitude,longitude,report_location,incident_number"
    line = b'"1st Av / Pike St",Aid Response,2024-01-01T00:05:00.000,47.6062,-122.3321,POINT (-122.3321 47.6062),F240001'
    (from_csv,) = parse_lines([header, line], "seattle-fire-soda")
    (from_record,) = parse_records([SODA_ROW], "seattle-fire-soda")
    assert isinstance(from_csv, Row) and isinstance(from_record, Row)
    assert from_csv.call == from_record.call


def test_a_record_without_its_id_is_rejected_not_given_a_made_up_id():
    """A record whose id column is empty or absent is rejected (missing_field): a re-read could not be recognised."""
    absent = {k: v for k, v in SODA_ROW.items() if k != "incident_number"}
    items = list(parse_records([{**SODA_ROW, "incident_number": ""}, absent], "seattle-fire-soda"))
    assert [(i.line, i.reason) for i in items if isinstance(i, Rejected)] == [(1, "missing_field"), (2, "missing_field")]


def test_records_unreadable_times_and_missing_columns_are_rejected_or_null_as_for_files():
    """An unreadable time is rejected (impossible_timestamp); absent coordinates read as null for the validator, as in a file."""
    bad_time, no_place = parse_records(
        [{**SODA_ROW, "datetime": "yesterday"}, {"incident_number": "F3", "type": "Aid Response", "datetime": "2024-01-01T00:05:00"}],
        "seattle-fire-soda",
        start=11,
    )
    assert isinstance(bad_time, Rejected) and (bad_time.line, bad_time.reason) == (11, "impossible_timestamp")
    assert isinstance(no_place, Row) and (no_place.line, no_place.call["lat"], no_place.call["lng"]) == (12, None, None)


def test_a_mapping_without_an_id_field_cannot_read_records():
    """parse_records refuses a mapping without fields.id, and 'auto' (a record has no header), with errors saying what to do."""
    with pytest.raises(MappingError, match="fields.id is missing"):
        parse_records([SODA_ROW], parse_mapping('name = "no-id"\n[fields]\nreceived_at = "datetime"\ncall_type = "type"\n', "m.toml"))
    assert "id" not in FORMATS["montgomery-pa"].fields
    with pytest.raises(UnknownFormat, match="no header"):
        parse_records([SODA_ROW], "auto")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("address,type,datetime,latitude,longitude,report_location,incident_number", "seattle-fire-soda"),
        ("Address,Type,Datetime,Latitude,Longitude,Report Location,Incident Number", "seattle-fire"),
        ("latitude,longitude,create_time_incident,incident_type_id,datetime", "cincinnati-fire"),
        ("lat,lng,desc,zip,title,timeStamp,twp,addr,e", "montgomery-pa"),
        ("id,received_at,call_type,lat,lng", "watchfloor"),
    ],
)
def test_the_soda_mapping_leaves_csv_detection_as_it_was(tmp_path, header, expected):
    """Detection still names every earlier format from its header; the API's CSV export (lower-case names) is the SODA mapping."""
    path = tmp_path / "export.csv"
    path.write_text(header + "\n")
    assert detect_format(path) == expected
