"""Tests for streams.ingest.sources: CSV exports in, schema-v1 call/update dicts or rejections out."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.ingest.schema import InvalidRecord, Reason, parse_event
from streams.ingest.sources import (
    FORMATS,
    WATCHFLOOR_COLUMNS,
    Rejected,
    Row,
    UnknownFormat,
    count_rows,
    detect_format,
    parse_lines,
    read_source,
)
from tests.conftest import DATA, data_file

NOW = 2e9  # a validating clock after every time used here

MONTGOMERY_HEADER = "lat,lng,desc,zip,title,timeStamp,twp,addr,e"
CINCINNATI_HEADER = "latitude,longitude,create_time_incident,incident_type_id,datetime"
SEATTLE_HEADER = "Address,Type,Datetime,Latitude,Longitude,Report Location,Incident Number"
WATCHFLOOR_HEADER = ",".join(WATCHFLOOR_COLUMNS)

# Invented rows in each source's layout; the addresses are made up and used to check that they never leak.
MONTGOMERY_ROWS = [
    "40.1,-75.3,MAPLE AVE & OAK ST;  SPRINGFIELD; Station 301; 2016-01-23 @ 11:02:11;,19001,Traffic: VEHICLE ACCIDENT -,"
    "2016-01-23 11:05:40,SPRINGFIELD,MAPLE AVE & OAK ST,1",
    "40.2,-75.4,ELM ST & BIRCH LN;  SHELBYVILLE; -- @ ::;,,EMS: FALL VICTIM,2016-07-01 12:00:00,SHELBYVILLE,ELM ST & BIRCH LN,1",
]
SAMPLE_ROWS = [
    "40.0883,-75.3821,EMS: ABDOMINAL PAINS,2016-01-15 12:01,SPRINGFIELD,CEDAR RD & PINE AVE",
    "40.1224,-75.3383,Fire: FIRE ALARM,2018-11-15 13:45,SHELBYVILLE,ASPEN CT & WILLOW WAY",
]
CINCINNATI_ROWS = [
    "39.13,-84.48,2026-05-24T23:50:57.000,SICK - 26A8 PAIN,2026-05-24 23:50:57",
    '39.12,-84.58,2026-05-25T05:09:42.250,"SEIZURE - 12C1 FOCAL, NOT ALERT",2026-05-25 05:09:42',
]
SEATTLE_ROWS = [
    'Spruce St / 1st Av,Motor Vehicle Accident,11/09/2011 10:04:00 PM +0000,47.65,-122.35,"(47.65, -122.35)",F110000001',
    "Nb I5 At Cedar,Motor Vehicle Accident Freeway, 2011-10-24T24:22:00+0000,47.62,-122.33,,F110000002",
    'Hemlock Pl / 2nd Av,Motor Vehicle Incident,12/26/2011 12:15:00 AM +0000,,,"(0, 0)",F110000003',
]
WATCHFLOOR_ROWS = [
    "C1,2016-01-23T11:02:11-05:00,Traffic,VEHICLE ACCIDENT,2,40.12,-75.34,montgomery-pa,"
    "2016-01-23T16:05:40Z,2016-01-23T16:06:00Z,2016-01-23T16:12:30Z,2016-01-23T17:00:00Z,M-41",
    "C2,2016-01-23T16:10:00Z,,CARDIAC ARREST,,40.13,-75.35,montgomery-pa,,,,,",
]
ADDRESSES = [
    "MAPLE AVE",
    "OAK ST",
    "SPRINGFIELD",
    "ELM ST",
    "SHELBYVILLE",
    "CEDAR RD",
    "ASPEN CT",
    "Spruce St",
    "Nb I5 At Cedar",
    "Hemlock",
    "Station 301",
]


def write(tmp_path: Path, *lines: str, name: str = "export.csv", ending: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes("".join(line + ending for line in lines).encode())
    return path


def read_all(path: Path, fmt: str = "auto") -> list[Row | Rejected]:
    return list(read_source(path, fmt))


def only_rows(items: list[Row | Rejected]) -> list[Row]:
    assert all(isinstance(i, Row) for i in items), [i for i in items if isinstance(i, Rejected)]
    return items  # type: ignore[return-value]  # every item is a Row (asserted above); all() does not narrow the list


# --------------------------------------------------------------------------- Montgomery


def test_montgomery_desc_time_is_received_at_and_timestamp_is_a_dispatched_update(tmp_path):
    """Montgomery's desc time (local, EST) becomes received_at and timeStamp one dispatched update."""
    (row, _) = only_rows(read_all(write(tmp_path, MONTGOMERY_HEADER, *MONTGOMERY_ROWS)))
    assert row.line == 2
    assert row.call == {
        "type": "call",
        "v": 1,
        "id": "montgomery-pa-2",
        "received_at": "2016-01-23T16:02:11Z",
        "category": "TRAFFIC",
        "call_type": "VEHICLE ACCIDENT",
        "priority": None,
        "lat": 40.1,
        "lng": -75.3,
        "agency": "montgomery-pa",
        "source": "montgomery-pa",
    }
    assert row.updates == (
        {
            "type": "update",
            "v": 1,
            "call_id": "montgomery-pa-2",
            "status": "dispatched",
            "at": "2016-01-23T16:05:40Z",
            "unit": None,
            "source": "montgomery-pa",
        },
    )
    assert row.event_time == 1453564931.0


def test_montgomery_without_desc_time_uses_timestamp_in_daylight_time_and_has_no_update(tmp_path):
    """A desc without a time ('-- @ ::') makes timeStamp (here EDT, UTC-4) the received time, with no update."""
    (_, row) = only_rows(read_all(write(tmp_path, MONTGOMERY_HEADER, *MONTGOMERY_ROWS)))
    assert row.call["received_at"] == "2016-07-01T16:00:00Z"
    assert row.call["category"] == "EMS" and row.call["call_type"] == "FALL VICTIM"
    assert row.updates == ()


def test_montgomery_timestamp_before_desc_time_gives_no_update(tmp_path):
    """When timeStamp is earlier than the desc time, the desc time stays received_at and no update is made."""
    line = "40.1,-75.3,A ST; B; 2016-01-23 @ 11:10:00;,,EMS: FALL VICTIM,2016-01-23 11:05:00,B,A ST,1"
    (row,) = only_rows(read_all(write(tmp_path, MONTGOMERY_HEADER, line)))
    assert row.call["received_at"] == "2016-01-23T16:10:00Z"
    assert row.updates == ()


@pytest.mark.parametrize(
    ("stamp", "reason"),
    [
        ("yesterday", "impossible_timestamp"),
        ("2016-02-30 10:00:00", "impossible_timestamp"),
        ("2016-01-23 25:00:00", "impossible_timestamp"),
        ("", "missing_field"),
    ],
)
def test_montgomery_unreadable_timestamp_is_rejected_naming_the_column(tmp_path, stamp, reason):
    """An unreadable or empty timeStamp rejects the row, and the detail names the column and the expected form."""
    line = f"40.1,-75.3,A ST; B; -- @ ::;,,EMS: FALL VICTIM,{stamp},B,A ST,1"
    (rej,) = read_all(write(tmp_path, MONTGOMERY_HEADER, line))
    assert isinstance(rej, Rejected)
    assert (rej.line, rej.reason) == (2, reason)
    assert "'timeStamp'" in rej.detail and "YYYY-MM-DD hh:mm:ss" in rej.detail
    assert rej.raw == line.encode()


def test_local_time_skipped_by_daylight_saving_is_rejected(tmp_path):
    """2016-03-13 02:30 does not exist in New York, so the row is rejected as an impossible timestamp."""
    line = "40.1,-75.3,A ST; B; -- @ ::;,,EMS: FALL VICTIM,2016-03-13 02:30:00,B,A ST,1"
    (rej,) = read_all(write(tmp_path, MONTGOMERY_HEADER, line))
    assert isinstance(rej, Rejected) and rej.reason == "impossible_timestamp"
    assert "daylight-saving" in rej.detail


def test_local_time_repeated_by_daylight_saving_reads_as_the_first_occurrence(tmp_path):
    """2016-11-06 01:30 happens twice in New York; it is read as the first (EDT) one."""
    line = "40.1,-75.3,A ST; B; -- @ ::;,,EMS: FALL VICTIM,2016-11-06 01:30:00,B,A ST,1"
    (row,) = only_rows(read_all(write(tmp_path, MONTGOMERY_HEADER, line)))
    assert row.call["received_at"] == "2016-11-06T05:30:00Z"


@pytest.mark.parametrize(
    ("lat", "lng", "expected"), [("", "", (None, None)), ("abc", "-75.3", (None, -75.3)), ("nan", "inf", (None, None))]
)
def test_missing_or_non_numeric_coordinates_become_none_and_the_validator_rejects_them(tmp_path, lat, lng, expected):
    """Empty, non-numeric or non-finite coordinates become None; the row still comes out, and parse_event rejects it."""
    line = f"{lat},{lng},A ST; B; -- @ ::;,,EMS: FALL VICTIM,2016-01-23 11:05:00,B,A ST,1"
    (row,) = only_rows(read_all(write(tmp_path, MONTGOMERY_HEADER, line)))
    assert (row.call["lat"], row.call["lng"]) == expected
    with pytest.raises(InvalidRecord) as exc:
        parse_event(json.dumps(row.call, allow_nan=False).encode(), now=NOW)
    assert exc.value.reason == Reason.MISSING_FIELD


def test_zero_coordinates_pass_through_as_zero_for_the_validator_to_refuse(tmp_path):
    """A (0, 0) location stays 0.0/0.0 in the call, and parse_event refuses it as coordinates_out_of_range."""
    line = "0,0,A ST; B; -- @ ::;,,EMS: FALL VICTIM,2016-01-23 11:05:00,B,A ST,1"
    (row,) = only_rows(read_all(write(tmp_path, MONTGOMERY_HEADER, line)))
    assert (row.call["lat"], row.call["lng"]) == (0.0, 0.0)
    with pytest.raises(InvalidRecord) as exc:
        parse_event(json.dumps(row.call).encode(), now=NOW)
    assert exc.value.reason == Reason.COORDINATES_OUT_OF_RANGE


def test_montgomery_title_without_colon_is_both_category_text_and_call_type(tmp_path):
    """A title without 'CATEGORY:' is normalized whole and kept whole as the call type."""
    line = "40.1,-75.3,A ST; B; -- @ ::;,,VEHICLE ACCIDENT,2016-01-23 11:05:00,B,A ST,1"
    (row,) = only_rows(read_all(write(tmp_path, MONTGOMERY_HEADER, line)))
    assert (row.call["category"], row.call["call_type"]) == ("TRAFFIC", "VEHICLE ACCIDENT")


# --------------------------------------------------------------------------- Montgomery sample


def test_sample_without_header_is_detected_and_its_first_line_is_data(tmp_path):
    """The headerless sample is recognized by its first line's shape, and that line is row 1."""
    path = write(tmp_path, *SAMPLE_ROWS)
    assert detect_format(path) == "montgomery-pa-sample"
    first, second = only_rows(read_all(path))
    assert (first.line, first.call["id"], first.call["source"]) == (1, "montgomery-pa-sample-1", "montgomery-pa-sample")
    assert first.call["received_at"] == "2016-01-15T17:01:00Z"
    assert (first.call["category"], first.call["call_type"], first.call["agency"]) == ("EMS", "ABDOMINAL PAINS", "montgomery-pa")
    assert (second.call["category"], second.call["received_at"]) == ("FIRE", "2018-11-15T18:45:00Z")


def test_sample_line_with_the_wrong_number_of_fields_is_a_bad_field(tmp_path):
    """A sample line with 5 fields instead of 6 is rejected as bad_field, saying how many were expected."""
    (_, rej) = read_all(write(tmp_path, SAMPLE_ROWS[0], "40.1,-75.3,EMS: FALL VICTIM,2016-01-15 12:01,SPRINGFIELD"))
    assert isinstance(rej, Rejected) and rej.reason == "bad_field"
    assert "5 fields" in rej.detail and "expected 6" in rej.detail


# --------------------------------------------------------------------------- Cincinnati


def test_cincinnati_create_time_with_millis_is_received_at_and_quoted_codes_keep_their_comma(tmp_path):
    """Cincinnati's local create_time_incident (EDT) is received_at; a quoted dispatch code with a comma stays whole."""
    first, second = only_rows(read_all(write(tmp_path, CINCINNATI_HEADER, *CINCINNATI_ROWS)))
    assert first.call["received_at"] == "2026-05-25T03:50:57Z"
    assert (first.call["category"], first.call["call_type"], first.call["agency"]) == ("EMS", "SICK - 26A8 PAIN", "cincinnati-fd")
    assert first.call["id"] == "cincinnati-fire-2" and first.updates == ()
    assert second.call["call_type"] == "SEIZURE - 12C1 FOCAL, NOT ALERT"
    assert second.call["received_at"] == "2026-05-25T09:09:42.250000Z"


# --------------------------------------------------------------------------- Seattle


def test_seattle_times_honour_the_offset_and_hour_24_is_the_next_day(tmp_path):
    """Seattle's 12-hour times honour '+0000', and ' 2011-10-24T24:22:00+0000' is 2011-10-25T00:22:00Z."""
    first, second, third = only_rows(read_all(write(tmp_path, SEATTLE_HEADER, *SEATTLE_ROWS)))
    assert first.call["received_at"] == "2011-11-09T22:04:00Z"
    assert second.call["received_at"] == "2011-10-25T00:22:00Z"
    assert third.call["received_at"] == "2011-12-26T00:15:00Z"  # 12 AM is hour 0
    assert [r.call["id"] for r in (first, second, third)] == ["F110000001", "F110000002", "F110000003"]
    assert {r.call["category"] for r in (first, second, third)} == {"TRAFFIC"}
    assert first.call["agency"] == "seattle-fd" and first.call["source"] == "seattle-fire"


def test_seattle_quoted_report_location_parses_and_no_coordinates_give_none(tmp_path):
    """The quoted '(lat, lng)' column does not split the row; a '(0, 0)' row with empty coordinates has lat/lng None."""
    first, _, third = only_rows(read_all(write(tmp_path, SEATTLE_HEADER, *SEATTLE_ROWS)))
    assert (first.call["lat"], first.call["lng"]) == (47.65, -122.35)
    assert (third.call["lat"], third.call["lng"]) == (None, None)


def test_seattle_other_offsets_are_honoured(tmp_path):
    """A '-0800' offset moves the time eight hours later in UTC."""
    line = "X,Motor Vehicle Accident,01/02/2012 01:30:00 PM -0800,47.6,-122.3,,F1"
    (row,) = only_rows(read_all(write(tmp_path, SEATTLE_HEADER, line)))
    assert row.call["received_at"] == "2012-01-02T21:30:00Z"


@pytest.mark.parametrize("stamp", ["13/45/2011 10:04:00 PM +0000", "11/09/2011 13:04:00 PM +0000", "2011-10-24T25:22:00+0000", "soon"])
def test_seattle_unreadable_datetime_is_an_impossible_timestamp(tmp_path, stamp):
    """Impossible dates, hour 13 on a 12-hour clock, hour 25 and free text are rejected, naming 'Datetime'."""
    (rej,) = read_all(write(tmp_path, SEATTLE_HEADER, f"X,Motor Vehicle Accident,{stamp},47.6,-122.3,,F1"))
    assert isinstance(rej, Rejected) and rej.reason == "impossible_timestamp"
    assert "'Datetime'" in rej.detail


def test_repeated_source_ids_are_kept_for_the_worker_to_refuse_and_empty_ids_fall_back(tmp_path):
    """A repeated Incident Number is passed on unchanged (the worker refuses it as duplicate_id); an empty one becomes '{format}-{line}'."""
    lines = [
        "A,Motor Vehicle Accident,11/09/2011 10:04:00 PM +0000,47.6,-122.3,,F1",
        "A,Motor Vehicle Accident,11/09/2011 10:04:00 PM +0000,47.6,-122.3,,F1",
        "A,Motor Vehicle Accident,11/09/2011 10:04:00 PM +0000,47.6,-122.3,,",
        "A,Motor Vehicle Accident,11/09/2011 10:04:00 PM +0000,47.6,-122.3,,F1",
    ]
    rows = only_rows(read_all(write(tmp_path, SEATTLE_HEADER, *lines)))
    assert [r.call["id"] for r in rows] == ["F1", "F1", "seattle-fire-4", "F1"]


# --------------------------------------------------------------------------- watchfloor


def test_watchfloor_status_columns_become_updates_with_the_unit(tmp_path):
    """Each non-empty status column gives one update, in lifecycle order, carrying the unit column."""
    first, second = only_rows(read_all(write(tmp_path, WATCHFLOOR_HEADER, *WATCHFLOOR_ROWS)))
    assert first.call == {
        "type": "call",
        "v": 1,
        "id": "C1",
        "received_at": "2016-01-23T16:02:11Z",
        "category": "TRAFFIC",
        "call_type": "VEHICLE ACCIDENT",
        "priority": 2,
        "lat": 40.12,
        "lng": -75.34,
        "agency": "montgomery-pa",
        "source": "watchfloor",
    }
    assert [(u["status"], u["at"], u["unit"], u["call_id"]) for u in first.updates] == [
        ("dispatched", "2016-01-23T16:05:40Z", "M-41", "C1"),
        ("en_route", "2016-01-23T16:06:00Z", "M-41", "C1"),
        ("on_scene", "2016-01-23T16:12:30Z", "M-41", "C1"),
        ("closed", "2016-01-23T17:00:00Z", "M-41", "C1"),
    ]
    for event in (first.call, *first.updates, second.call):
        parse_event(json.dumps(event).encode(), now=NOW)
    assert second.updates == () and second.call["priority"] is None


def test_watchfloor_empty_category_is_normalized_from_the_call_type(tmp_path):
    """An empty category cell falls back to normalizing call_type ('CARDIAC ARREST' is EMS)."""
    (_, second) = only_rows(read_all(write(tmp_path, WATCHFLOOR_HEADER, *WATCHFLOOR_ROWS)))
    assert second.call["category"] == "EMS"


def test_watchfloor_update_without_unit_has_unit_none(tmp_path):
    """A status time with an empty unit cell gives an update whose unit is None."""
    line = "C3,2016-01-23T16:10:00Z,Fire,ALARM,,40.1,-75.3,x,,,2016-01-23T16:20:00Z,,"
    (row,) = only_rows(read_all(write(tmp_path, WATCHFLOOR_HEADER, line)))
    assert [(u["status"], u["unit"]) for u in row.updates] == [("on_scene", None)]


@pytest.mark.parametrize(
    ("received", "priority", "dispatched", "reason", "column"),
    [
        ("2016-01-23 16:10:00", "", "", "impossible_timestamp", "received_at"),  # no offset
        ("", "", "", "missing_field", "received_at"),
        ("2016-01-23T16:10:00Z", "7", "", "bad_field", "priority"),
        ("2016-01-23T16:10:00Z", "high", "", "bad_field", "priority"),
        ("2016-01-23T16:10:00Z", "", "later", "impossible_timestamp", "dispatched_at"),
    ],
)
def test_watchfloor_bad_cells_are_rejected_naming_the_column(tmp_path, received, priority, dispatched, reason, column):
    """A time without offset, an empty received_at, a priority outside 1..5 or an unreadable status time is rejected.

    (A status time before the call is no longer a rejection: test_mapping.py's skew tests.)
    """
    line = f"C4,{received},EMS,FALL,{priority},40.1,-75.3,x,{dispatched},,,,"
    (rej,) = read_all(write(tmp_path, WATCHFLOOR_HEADER, line))
    assert isinstance(rej, Rejected)
    assert rej.reason == reason
    assert f"'{column}'" in rej.detail


def test_watchfloor_columns_in_any_order_and_extra_columns_are_ignored(tmp_path):
    """Columns are found by name, and an extra 'address' column is read past and never copied."""
    header = "address," + ",".join(reversed(WATCHFLOOR_COLUMNS))
    cells = dict(zip(WATCHFLOOR_COLUMNS, next(csv.reader([WATCHFLOOR_ROWS[0]])), strict=True))
    line = "12 MAPLE AVE," + ",".join(cells[c] for c in reversed(WATCHFLOOR_COLUMNS))
    (row,) = only_rows(read_all(write(tmp_path, header, line)))
    assert row.call["id"] == "C1" and len(row.updates) == 4
    assert "MAPLE" not in json.dumps([row.call, *row.updates])


def test_watchfloor_hour_24_and_repeated_ids(tmp_path):
    """The watchfloor reader also reads hour 24 as the next day and keeps a repeated id as it is."""
    lines = ["C1,2016-01-23T24:10:00Z,EMS,FALL,,40.1,-75.3,x,,,,,"] * 2
    first, second = only_rows(read_all(write(tmp_path, WATCHFLOOR_HEADER, *lines)))
    assert first.call["received_at"] == "2016-01-24T00:10:00Z"
    assert (first.call["id"], second.call["id"]) == ("C1", "C1")


# --------------------------------------------------------------------------- lines and structure


def test_unclosed_quote_and_invalid_utf8_are_bad_fields_with_the_raw_bytes(tmp_path):
    """A line that is not CSV or not UTF-8 is rejected as bad_field and carries its original bytes."""
    path = tmp_path / "bad.csv"
    bad_csv = b'A,Motor Vehicle Accident,11/09/2011 10:04:00 PM +0000,47.6,-122.3,"(47.6, -122.3,F1'
    bad_utf8 = b"A\xff,Motor Vehicle Accident,11/09/2011 10:04:00 PM +0000,47.6,-122.3,,F2"
    path.write_bytes(SEATTLE_HEADER.encode() + b"\n" + bad_csv + b"\n" + bad_utf8 + b"\n")
    first, second = read_all(path)
    assert isinstance(first, Rejected) and (first.line, first.reason, first.raw) == (2, "bad_field", bad_csv)
    assert "not valid CSV" in first.detail
    assert isinstance(second, Rejected) and (second.line, second.reason, second.raw) == (3, "bad_field", bad_utf8)
    assert "UTF-8" in second.detail


def test_crlf_endings_bom_and_blank_lines_are_handled_and_counted_consistently(tmp_path):
    """CRLF endings and a UTF-8 BOM are tolerated, blank lines are skipped, and count_rows equals what is yielded."""
    path = tmp_path / "crlf.csv"
    body = "\r\n".join([CINCINNATI_HEADER, CINCINNATI_ROWS[0], "", "  ", CINCINNATI_ROWS[1]]) + "\r\n\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    rows = only_rows(read_all(path))
    assert [r.line for r in rows] == [2, 5]
    assert rows[0].raw == CINCINNATI_ROWS[0].encode()
    assert count_rows(path) == len(rows) == 2


def test_count_rows_counts_data_lines_with_and_without_a_header(tmp_path):
    """count_rows leaves out the header line of formats that have one and counts the sample's first line."""
    assert count_rows(write(tmp_path, MONTGOMERY_HEADER, *MONTGOMERY_ROWS, name="m.csv")) == 2
    assert count_rows(write(tmp_path, *SAMPLE_ROWS, name="s.csv")) == 2
    assert count_rows(write(tmp_path, WATCHFLOOR_HEADER, name="w.csv")) == 0


def test_parse_lines_is_lazy_so_a_huge_input_streams(tmp_path):
    """parse_lines pulls lines only as rows are asked for, so an endless input can be read in part."""
    endless = itertools.chain([SAMPLE_ROWS[0].encode()], itertools.repeat(SAMPLE_ROWS[1].encode()))
    first_three = list(itertools.islice(parse_lines(endless), 3))
    assert [r.line for r in first_three] == [1, 2, 3]


def test_read_source_checks_the_format_at_the_call_not_at_first_iteration(tmp_path):
    """read_source raises UnknownFormat before anything is iterated when the header fits no format."""
    with pytest.raises(UnknownFormat):
        read_source(write(tmp_path, "when,where,who", "1,2,3"))


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ((MONTGOMERY_HEADER, MONTGOMERY_ROWS[0]), "montgomery-pa"),
        ((SAMPLE_ROWS[0],), "montgomery-pa-sample"),
        ((CINCINNATI_HEADER,), "cincinnati-fire"),
        ((SEATTLE_HEADER,), "seattle-fire"),
        ((WATCHFLOOR_HEADER,), "watchfloor"),
    ],
)
def test_detect_format_recognizes_every_known_layout(tmp_path, lines, expected):
    """detect_format names each known layout from its first line."""
    assert detect_format(write(tmp_path, *lines)) == expected


def test_unknown_header_raises_naming_the_header_and_every_known_format(tmp_path):
    """An unknown header raises UnknownFormat (a ValueError) quoting the header and listing every format name."""
    path = write(tmp_path, "incident,when,where", "1,2,3")
    with pytest.raises(UnknownFormat) as exc:
        detect_format(path)
    assert isinstance(exc.value, ValueError)
    message = str(exc.value)
    assert "incident,when,where" in message and str(path) in message
    assert all(name in message for name in FORMATS)


def test_empty_file_raises_unknown_format(tmp_path):
    """An empty file has no format, and the error says it is empty."""
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(UnknownFormat, match="empty file"):
        detect_format(path)


def test_explicit_format_with_a_header_lacking_its_columns_raises_listing_them(tmp_path):
    """Asking for seattle-fire on a Cincinnati file raises UnknownFormat naming the missing columns."""
    path = write(tmp_path, CINCINNATI_HEADER, *CINCINNATI_ROWS)
    with pytest.raises(UnknownFormat, match="Datetime, Latitude, Longitude, Type"):
        read_source(path, "seattle-fire")


def test_unknown_format_name_raises_listing_the_known_names(tmp_path):
    """A format name not in FORMATS raises UnknownFormat listing the names it knows."""
    with pytest.raises(UnknownFormat, match="montgomery-pa, montgomery-pa-sample"):
        read_source(write(tmp_path, *SAMPLE_ROWS), "chicago")


def test_formats_has_the_agreed_names():
    """FORMATS holds exactly the six agreed format names, each keyed by its own name."""
    assert set(FORMATS) == {"montgomery-pa", "montgomery-pa-sample", "cincinnati-fire", "seattle-fire", "seattle-fire-soda", "watchfloor"}
    assert all(adapter.name == name for name, adapter in FORMATS.items())


# --------------------------------------------------------------------------- data minimization


@pytest.mark.parametrize(
    ("lines", "n_rows"),
    [
        ((MONTGOMERY_HEADER, *MONTGOMERY_ROWS), 2),
        (SAMPLE_ROWS, 2),
        ((SEATTLE_HEADER, *SEATTLE_ROWS), 3),
    ],
)
def test_no_address_text_reaches_any_call_or_update(tmp_path, lines, n_rows):
    """No address, township, station or desc text from the row appears in its call or update dicts."""
    rows = only_rows(read_all(write(tmp_path, *lines)))
    assert len(rows) == n_rows
    for row in rows:
        assert set(row.call) == {"type", "v", "id", "received_at", "category", "call_type", "priority", "lat", "lng", "agency", "source"}
        text = json.dumps([row.call, *row.updates])
        assert not [a for a in ADDRESSES if a in text], text


# --------------------------------------------------------------------------- properties

_cell = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30)


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.lists(_cell, min_size=0, max_size=15), min_size=1, max_size=8), st.sampled_from(["watchfloor", "montgomery-pa-sample"]))
def test_any_lines_give_one_item_each_and_every_call_is_valid_json_the_validator_can_judge(cells, fmt):
    """Whatever the cells, each non-blank line yields exactly one Row or Rejected and every Row serializes to strict JSON."""
    lines = []
    for row in cells:
        buf = io.StringIO()
        csv.writer(buf).writerow(row)
        lines.append(buf.getvalue().rstrip("\r\n").encode())
    header = [WATCHFLOOR_HEADER.encode()] if fmt == "watchfloor" else []
    items = list(parse_lines([*header, *lines], fmt))
    assert len(items) == sum(1 for line in lines if line.strip())
    for item in items:
        if isinstance(item, Row):
            for event in (item.call, *item.updates):
                try:
                    parse_event(json.dumps(event, allow_nan=False).encode(), now=NOW)
                except InvalidRecord:
                    pass
        else:
            assert item.reason in {r.value for r in Reason} and item.detail


# --------------------------------------------------------------------------- real data

# None where ../shared/data is absent (a fresh clone): the tests that read them are skipped there.
MONTGOMERY = data_file("montgomery-pa-911-2015-12-to-2016-08.csv")
SAMPLE = data_file("montgomery-pa-911-sample-2016-2018.csv")
CINCINNATI = data_file("cincinnati-fire-ems-60-days.csv")
SEATTLE = data_file("seattle-fire-911-mva-2010-2015.csv")


def _needs(path: Path | None) -> pytest.MarkDecorator:
    return pytest.mark.skipif(path is None, reason=f"real data file not present in {DATA}")


@pytest.mark.parametrize(
    ("path", "fmt", "n_rows", "n_ids"),
    [
        pytest.param(MONTGOMERY, "montgomery-pa", 99_492, 99_492, marks=_needs(MONTGOMERY)),
        pytest.param(SAMPLE, "montgomery-pa-sample", 3_051, 3_051, marks=_needs(SAMPLE)),
        pytest.param(CINCINNATI, "cincinnati-fire", 10_749, 10_749, marks=_needs(CINCINNATI)),
        # Seattle repeats Incident Numbers; the repeats are kept for the worker to refuse as duplicate_id
        pytest.param(SEATTLE, "seattle-fire", 13_771, 13_266, marks=_needs(SEATTLE)),
    ],
)
def test_real_file_is_detected_read_whole_and_passes_the_validator(path, fmt, n_rows, n_ids):
    """Each real file is detected, yields one Row or Rejected per data row with the expected distinct ids, and its events validate.

    The only calls the validator refuses are Seattle's 25 rows without coordinates.
    """
    assert detect_format(path) == fmt
    assert count_rows(path) == n_rows
    items = read_all(path)
    assert len(items) == n_rows
    rows = only_rows(items)  # none of these files has a line the adapters must reject
    assert len({r.call["id"] for r in rows}) == n_ids
    refused = Counter()
    for row in rows:
        for update in row.updates:
            parse_event(json.dumps(update).encode(), now=NOW)
        try:
            parse_event(json.dumps(row.call).encode(), now=NOW)
        except InvalidRecord as exc:
            refused[exc.reason] += 1
    assert refused == (Counter({Reason.MISSING_FIELD: 25}) if fmt == "seattle-fire" else Counter())


@_needs(SEATTLE)
def test_real_seattle_rows_refused_by_the_validator_are_exactly_the_25_without_coordinates():
    """parse_event refuses exactly the 25 Seattle rows whose Report Location is '(0, 0)', and accepts every other row."""
    refused, no_location = set(), set()
    for row in only_rows(read_all(SEATTLE)):
        if next(csv.reader([row.raw.decode()]))[5] == "(0, 0)":
            no_location.add(row.line)
        try:
            parse_event(json.dumps(row.call).encode(), now=NOW)
        except InvalidRecord:
            refused.add(row.line)
    assert len(no_location) == 25
    assert refused == no_location


@_needs(SEATTLE)
def test_real_seattle_hour_24_rows_land_on_the_next_day():
    """All 25 Seattle rows with an ISO hour-24 time come out at hour 0 of the next UTC day."""
    shifted = [r for r in only_rows(read_all(SEATTLE)) if b"T24:" in r.raw]
    assert len(shifted) == 25
    assert all(r.call["received_at"][11:13] == "00" for r in shifted)


@_needs(MONTGOMERY)
def test_real_montgomery_reads_every_row():
    """Every one of the 99,492 Montgomery rows is read (how fast is a benchmark's figure, bench/backfill.py, not a test's)."""
    assert sum(1 for _ in read_source(MONTGOMERY)) == 99_492


@_needs(MONTGOMERY)
def test_real_montgomery_has_a_dispatched_update_exactly_for_rows_with_a_desc_time():
    """Every Montgomery row gets one dispatched update except the three whose desc says '-- @ ::'."""
    rows = only_rows(read_all(MONTGOMERY))
    without_update = [r for r in rows if not r.updates]
    assert len(without_update) == 3
    assert all(b"-- @ ::" in r.raw for r in without_update)
    assert all(len(r.updates) == 1 and r.updates[0]["status"] == "dispatched" for r in rows if r.updates)


@_needs(MONTGOMERY)
def test_real_montgomery_leaks_no_desc_township_or_address():
    """No piece of desc, no township and no address of any of the 99,492 real Montgomery rows reaches its calls or updates."""
    rows, looked_for, leaks = _leaks(MONTGOMERY, lambda fields: (*fields[2].split(";"), fields[6], fields[7]))
    assert leaks == []
    assert (rows, looked_for) == (99_492, 99_491)  # every row read; all but one hold a free text to look for


@_needs(SAMPLE)
def test_real_sample_leaks_no_township_or_address():
    """No township or address text of any of the 3,051 rows of the real sample reaches its calls."""
    rows, looked_for, leaks = _leaks(SAMPLE, lambda fields: (fields[4], fields[5]))
    assert leaks == []
    assert (rows, looked_for) == (3_051, 3_051)


@_needs(SEATTLE)
def test_real_seattle_leaks_no_address():
    """No Address text of any of the 13,771 rows of the real Seattle file reaches its calls."""
    rows, looked_for, leaks = _leaks(SEATTLE, lambda fields: (fields[0],))
    assert leaks == []
    assert (rows, looked_for) == (13_771, 13_754)  # 17 rows have no Address


def _leaks(path: Path, free_texts: Callable[[list[str]], tuple[str, ...]]) -> tuple[int, int, list[tuple[int, list[str]]]]:
    """Read ``path`` whole: the rows read, the rows with a free text to look for (``free_texts`` of the row's
    fields, the ones with a letter) and, per row where some were found in its events, its line and those texts."""
    rows = looked_for = 0
    leaks = []
    for row in only_rows(read_all(path)):
        texts = free_texts(next(csv.reader([row.raw.decode()])))
        rows += 1
        looked_for += any(t.strip() and any(c.isalpha() for c in t) for t in texts)
        if found := _leaked(texts, row):
            leaks.append((row.line, found))
    return rows, looked_for, leaks


def _leaked(free_texts: tuple[str, ...], row: Row) -> list[str]:
    """The free texts found as whole words in the row's string values.

    Numbers ('81', a digit run in a coordinate) and word fragments ('CON' of
    'CONDITIONS') are not leaks.
    """
    strings = [_words(v) for event in (row.call, *row.updates) for v in event.values() if isinstance(v, str)]
    texts = [_words(t) for t in free_texts if any(c.isalpha() for c in t)]
    return [t.strip() for t in texts if t.strip() and any(t in s for s in strings)]


def _words(text: str) -> str:
    return " " + _NOT_WORD.sub(" ", text).strip() + " "


_NOT_WORD = re.compile(r"\W+")
