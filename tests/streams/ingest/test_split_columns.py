"""A time split over two columns (a date and a time) and fields separated by other than commas.

LAPD's Calls for Service write ``Dispatch_Date`` ``01/01/2020`` and ``Dispatch_Time`` ``13:45:00``; many CAD
exports write ``Call Date`` + ``Call Time``; European and spreadsheet exports separate fields with ``;``, tabs or
``|``. A mapping reads them with ``columns = [...]`` and ``[layout] delimiter``; inspect proposes both. Every
row below is invented; addresses are at block level.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from streams.ingest import replay
from streams.ingest.inspect import Sample, main, propose, render_toml
from streams.ingest.mapping import MappingError, load_mapping, parse_mapping
from streams.ingest.sources import Rejected, Row, parse_lines, read_source

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


# --------------------------------------------------------------------------- inspect, end to end

LA = ZoneInfo("America/Los_Angeles")


def utc(local: str, fmt: str = "%m/%d/%Y %H:%M:%S") -> str:
    """A Los Angeles wall time as the engine must emit it (computed here with zoneinfo, not with the engine's reader)."""
    return datetime.strptime(local, fmt).replace(tzinfo=LA).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def lapd(midnight: str) -> tuple[str, dict[str, str]]:
    """LAPD Calls for Service's layout: the date and the time of dispatch in two columns, local times, no coordinates;
    the date written as a date, or as a timestamp at midnight (``midnight``, as a Socrata portal exports it)."""
    head = "Incident_Number,Area_Occ,Rpt_Dist,Dispatch_Date,Dispatch_Time,Call_Type_Code,Call_Type_Text"
    types = [("242", "BATTERY"), ("902", "TRAFFIC ACCIDENT"), ("246", "SHOTS FIRED"), ("415", "DISTURBANCE"), ("906B1", "CODE 30 RINGER")]
    areas = ["Central", "Hollywood", "Newton", "77th Street", "Pacific"]
    rows, expected = [head], {}
    for i in range(24):
        code, text = types[i % len(types)]
        date = f"{1 + 6 * (i % 2):02d}/{1 + i // 2:02d}/2020"  # January (UTC-8) and July (UTC-7)
        clock = f"{(i * 5) % 24:02d}:{(i * 17) % 60:02d}:{(i * 31) % 60:02d}"
        rows.append(f"PD200{i:08d},{areas[i % 5]},{1000 + i},{date}{midnight},{clock},{code},{text}")
        expected[f"PD200{i:08d}"] = utc(f"{date} {clock}")
    rows.append(f"PD20099999998,Central,0152,01/30/2020{midnight},,242,BATTERY")  # no time: missing_field
    rows.append(f"PD20099999999,Central,0152,01/30/2020{midnight},24:30:00,242,BATTERY")  # no such hour: impossible_timestamp
    return "\n".join(rows) + "\n", expected


@pytest.mark.parametrize("midnight", ["", " 12:00:00 AM"])
def test_inspect_proposes_the_date_and_time_columns_of_an_lapd_like_export_and_the_mapping_reads_the_exact_calls(
    midnight, tmp_path, capsys
):
    text, expected = lapd(midnight)
    path, proposed = tmp_path / "lapd-calls-2020.csv", tmp_path / "lapd.toml"
    path.write_text(text, encoding="utf-8")
    assert main([str(path), "--timezone", "America/Los_Angeles", "--write-mapping", str(proposed)]) == 0
    printed = capsys.readouterr().out
    pattern = f"%m/%d/%Y{midnight} %H:%M:%S"  # a date at midnight: its midnight is literal text in the pattern
    assert f"Dispatch_Date + Dispatch_Time  {pattern}  reads 96.0% of 25 values" in printed  # one hour 24:30
    assert "'Dispatch_Date' and 'Dispatch_Time' hold a date and a time" in printed
    assert 'received_at = { columns = ["Dispatch_Date", "Dispatch_Time"] }' in proposed.read_text(encoding="utf-8")
    items = list(read_source(path, load_mapping(proposed), timezone="America/Los_Angeles"))
    calls = {i.call["id"]: i.call["received_at"] for i in items if isinstance(i, Row)}
    assert calls == expected
    assert (calls["PD20000000000"], calls["PD20000000001"]) == ("2020-01-01T08:00:00Z", "2020-07-01T12:17:31Z")
    empty, hour = (i for i in items if isinstance(i, Rejected))
    assert (empty.line, empty.reason, hour.line, hour.reason) == (26, "missing_field", 27, "impossible_timestamp")
    assert "'Dispatch_Time' is empty" in empty.detail
    assert f"'Dispatch_Date + Dispatch_Time' is '01/30/2020{midnight} 24:30:00'" in hour.detail


def cad(delimiter: str) -> tuple[str, dict[str, tuple[str, list[str]]]]:
    """A CAD export saved with another delimiter: call and arrival each as a date and a time; a call type holding the delimiter."""
    r = random.Random(20)
    head = [
        "Call Number",
        "Call Date",
        "Call Time",
        "Nature",
        "Priority",
        "Arrival Date",
        "Arrival Time",
        "Block Address",
        "Latitude",
        "Longitude",
    ]
    natures = ["CHEST PAIN", "STRUCTURE FIRE", "MVA WITH INJURIES", f"ALARM{delimiter} FIRE", "FALL"]
    rows, expected = [delimiter.join(head)], {}
    for i in range(20):
        date, clock = f"03/{1 + i // 4:02d}/2021", f"{(i * 3) % 24:02d}:{(i * 7) % 50:02d}:00"
        arrival = "" if i % 5 == 0 else f"{(i * 3) % 24:02d}:{(i * 7) % 50 + 6:02d}:30"
        nature = natures[i % len(natures)]
        cells = [
            f"C21{i:05d}", date, clock, f'"{nature}"' if delimiter in nature else nature, str(1 + i % 3), date if arrival else "",
            arrival, f"{r.randrange(1, 50) * 100} Block of MAIN ST", f"{45.5 + r.uniform(-0.05, 0.05):.6f}",
            f"{-122.6 + r.uniform(-0.05, 0.05):.6f}",
        ]  # fmt: skip
        rows.append(delimiter.join(cells))
        expected[f"C21{i:05d}"] = (utc(f"{date} {clock}"), [utc(f"{date} {arrival}")] if arrival else [])
    rows.append(delimiter.join(["C2199999", "03/31/2021", "", "FALL", "1", "", "", "100 Block of ELM ST", "45.5", "-122.6"]))
    return "\n".join(rows) + "\n", expected


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_inspect_proposes_the_delimiter_and_the_split_status_times_and_the_mapping_reads_the_exact_calls(delimiter, tmp_path, capsys):
    text, expected = cad(delimiter)
    path, proposed = tmp_path / "county-cad-2021.csv", tmp_path / "cad.toml"
    path.write_text(text, encoding="utf-8")
    assert main([str(path), "--timezone", "America/Los_Angeles", "--write-mapping", str(proposed)]) == 0
    printed = capsys.readouterr().out
    mapping_text = proposed.read_text(encoding="utf-8")
    assert f"delimiter = {json.dumps(delimiter)}" in mapping_text
    assert 'received_at = { columns = ["Call Date", "Call Time"] }' in mapping_text
    assert 'status = "on_scene"\ncolumns = ["Arrival Date", "Arrival Time"]' in mapping_text
    assert "Block Address=[masked]" in printed and "Block of" not in printed
    rows = [i for i in read_source(path, load_mapping(proposed), timezone="America/Los_Angeles") if isinstance(i, Row)]
    assert {r.call["id"]: (r.call["received_at"], [u["at"] for u in r.updates]) for r in rows} == expected
    assert next(r for r in rows if r.call["id"] == "C2100003").call["call_type"] == f"ALARM{delimiter} FIRE"
    assert {r.call["category"] for r in rows} == {"EMS", "FIRE", "TRAFFIC"}
    assert replay.main([str(path), "--mapping", str(proposed), "--timezone", "America/Los_Angeles", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("dry run: 20 calls and 16 incident updates")


def test_a_column_holding_date_and_time_is_read_alone_and_a_bare_date_and_time_pair_is_joined(tmp_path, capsys):
    both = "Call DateTime,Call Date,Call Time,Type\n" + "".join(
        f"01/0{d}/2021 0{d}:00:00,01/0{d}/2021,0{d}:00:00,FIRE\n" for d in range(1, 10)
    )
    p = propose(Sample.from_lines(both.encode().splitlines()), name="x")
    assert (p.received.column, p.received.parts) == ("Call DateTime", ())
    bare = "Date,Time,Type\n" + "".join(f"2021-01-0{d},0{d}:30,FIRE\n" for d in range(1, 10))
    p = propose(Sample.from_lines(bare.encode().splitlines()), name="x", timezone="UTC")
    assert (p.received.column, p.received.pattern, p.received.parts) == ("Date + Time", "iso", ("Date", "Time"))
    path = tmp_path / "bare.csv"
    path.write_text(bare, encoding="utf-8")
    mapping = parse_mapping(render_toml(p))
    (first, *_) = read_source(path, mapping, timezone="UTC")
    assert isinstance(first, Row) and first.call["received_at"] == "2021-01-01T01:30:00Z"
