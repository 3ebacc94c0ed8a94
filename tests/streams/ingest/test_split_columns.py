"""A time split over two columns (a date and a time) and fields separated by other than commas.

LAPD's Calls for Service write ``Dispatch_Date`` ``01/01/2020`` and ``Dispatch_Time`` ``13:45:00``; many CAD
exports write ``Call Date`` + ``Call Time``; European and spreadsheet exports separate fields with ``;``, tabs or
``|``. A mapping reads them with ``columns = [...]`` and ``[layout] delimiter``; inspect proposes both. Every
row below is invented; addresses are at block level.
"""

from __future__ import annotations

import pytest

from streams.ingest.mapping import MappingError, parse_mapping
from streams.ingest.sources import Rejected, Row, parse_lines

SPLIT = """
name = "split"
timezone = "America/Los_Angeles"
[fields]
id = "Incident_Number"
received_at = { columns = ["Dispatch_Date", "Dispatch_Time"], formats = ["%m/%d/%Y %H:%M:%S"] }
call_type = "Call_Type_Text"
[[statuses]]
status = "on_scene"
columns = ["Arrival Date", "Arrival Time"]
formats = ["%m/%d/%Y %H:%M:%S"]
"""


def rows(lines: list[bytes], text: str = SPLIT) -> list[Row | Rejected]:
    return list(parse_lines(lines, parse_mapping(text)))


HEADER = b"Incident_Number,Dispatch_Date,Dispatch_Time,Call_Type_Text,Arrival Date,Arrival Time"


def test_a_date_and_a_time_in_two_columns_are_read_as_one_time_in_the_zone():
    row, late = rows([HEADER, b"P1,01/01/2020,13:45:00,TRAFFIC ACCIDENT,01/01/2020,13:52:30", b"P2,07/04/2020,23:59:59,SHOTS FIRED,,"])
    assert isinstance(row, Row) and isinstance(late, Row)
    assert (row.call["received_at"], [u["at"] for u in row.updates]) == ("2020-01-01T21:45:00Z", ["2020-01-01T21:52:30Z"])
    assert (late.call["received_at"], late.updates) == ("2020-07-05T06:59:59Z", ())  # summer: UTC-7; no arrival, no update


def test_an_empty_part_makes_the_time_empty_and_the_message_names_the_empty_column():
    (bad,) = rows([HEADER, b"P3,01/01/2020,,ASSAULT,,"])
    assert isinstance(bad, Rejected) and bad.reason == "missing_field"
    assert bad.detail.startswith("columns 'Dispatch_Date' + 'Dispatch_Time' have no time: 'Dispatch_Time' is empty"), bad.detail
    (half,) = rows([HEADER, b"P4,01/01/2020,10:00:00,ASSAULT,01/01/2020,"])
    assert isinstance(half, Row) and half.updates == ()  # an arrival date without its time: no update


def test_an_unreadable_joined_time_is_rejected_naming_both_columns_and_the_joined_value():
    bad, status = rows([HEADER, b"P5,01/01/2020,25:00:00,ASSAULT,,", b"P6,01/01/2020,10:00:00,ASSAULT,01/01/2020,noon"])
    assert isinstance(bad, Rejected) and bad.reason == "impossible_timestamp"
    assert "'Dispatch_Date + Dispatch_Time' is '01/01/2020 25:00:00'" in bad.detail, bad.detail
    assert isinstance(status, Rejected) and "'Arrival Date + Arrival Time' is '01/01/2020 noon'" in status.detail


def test_a_header_without_one_of_the_parts_is_refused_naming_it():
    with pytest.raises(ValueError, match="lacks the columns Dispatch_Time"):
        rows([b"Incident_Number,Dispatch_Date,Call_Type_Text,Arrival Date,Arrival Time"])


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ('received_at = { column = "Call Date", columns = ["Call Date", "Call Time"] }', "fields.received_at has both column"),
        ('received_at = { columns = ["Call Date"] }', "fields.received_at.columns is ['Call Date']; expected two or more"),
        ('received_at = { columns = ["Call Date", "Call Date"] }', "fields.received_at.columns is ['Call Date', 'Call Date']; names"),
        ('received_at = "t"\ncall_type = { columns = ["a", "b"] }', "fields.call_type.columns is not a known key"),
        ('received_at = "t"\n[[statuses]]\nstatus = "closed"\ncolumn = "c"\ncolumns = ["d", "e"]', "statuses[0] has both column"),
    ],
)
def test_a_mapping_with_column_and_columns_or_a_bad_columns_is_refused_naming_the_field(fields, key):
    text = f'name = "x"\n[fields]\n{fields}' + ("" if "call_type" in fields else '\ncall_type = "type"')
    if "[[statuses]]" in fields:  # call_type must come before the status tables
        head, statuses = fields.split("\n[[statuses]]")
        text = f'name = "x"\n[fields]\n{head}\ncall_type = "type"\n[[statuses]]{statuses}'
    with pytest.raises(MappingError, match="^<mapping>: " + key.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        parse_mapping(text)


SEMICOLONS = """
name = "semi"
timezone = "Europe/Berlin"
time_formats = ["%d.%m.%Y %H:%M:%S"]
[layout]
delimiter = ";"
[fields]
id = "Einsatz"
received_at = "Alarmzeit"
call_type = "Stichwort"
lat = "Breite"
lng = "Laenge"
"""


def test_a_semicolon_separated_file_is_read_with_quoted_semicolons_and_rejects_a_short_line():
    lines = [
        b"Einsatz;Alarmzeit;Stichwort;Breite;Laenge",
        b'E1;01.02.2021 08:15:00;"FIRE; SMOKE";52.52;13.40',
        b"E2;01.02.2021 09:00:00;CHEST PAIN",
    ]
    row, short = rows(lines, SEMICOLONS)
    assert isinstance(row, Row) and row.call["call_type"] == "FIRE; SMOKE" and row.call["received_at"] == "2021-02-01T07:15:00Z"
    assert (row.call["lat"], row.call["lng"], row.call["category"]) == (52.52, 13.4, "FIRE")
    assert isinstance(short, Rejected) and "line has 3 fields; expected 5" in short.detail
    assert "(separated by ';')" in short.detail


def test_a_comma_mapping_on_a_semicolon_header_says_to_set_the_delimiter():
    with pytest.raises(ValueError, match=r"set \[layout\] delimiter = ';' in the mapping"):
        rows([b"Einsatz;Alarmzeit;Stichwort;Breite;Laenge"], SEMICOLONS.replace('delimiter = ";"', ""))


@pytest.mark.parametrize("toml", ['""', '";;"', '"\\n"', "'\"'", "1"])
def test_a_delimiter_that_is_not_one_plain_character_is_refused(toml):
    with pytest.raises(MappingError, match="layout.delimiter is .*; expected one character other than a quote or a line end"):
        parse_mapping(SEMICOLONS.replace('delimiter = ";"', f"delimiter = {toml}"))
