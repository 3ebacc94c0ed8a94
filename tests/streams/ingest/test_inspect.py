"""Tests for streams.ingest.inspect: a new export's sample in, a proposed mapping and a read/rejected summary out."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from streams.ingest.inspect import (
    ZONE_PLACEHOLDER,
    InspectError,
    Sample,
    _validate,
    _without_placeholder,
    agency_name,
    main,
    masked_row,
    propose,
    read_sample,
    render_toml,
    summarize,
    time_format,
)
from streams.ingest.mapping import builtin_mappings
from streams.ingest.sources import parse_lines
from tests.conftest import data_file

ROOT = Path(__file__).resolve().parents[3]
SF_SAMPLE = ROOT / "docs" / "examples" / "sf-fire-calls-sample.csv"
SF_MAPPING = ROOT / "docs" / "examples" / "sf-fire.toml"

REAL_FILES = {
    "montgomery-pa-911-2015-12-to-2016-08.csv": "America/New_York",
    "montgomery-pa-911-sample-2016-2018.csv": "America/New_York",
    "cincinnati-fire-ems-60-days.csv": "America/New_York",
    "seattle-fire-911-mva-2010-2015.csv": None,  # its times carry an offset: no zone needed
}


def sample(*lines: str) -> Sample:
    return Sample.from_lines(line.encode() for line in lines)


# --------------------------------------------------------------------------- sample and values


def test_a_first_line_of_names_is_a_header_and_one_with_numbers_is_data():
    with_header = sample("lat,lng,title,when", "40.1,-75.3,EMS: FALL,2016-01-15 12:01")
    without = sample("40.1,-75.3,EMS: FALL,2016-01-15 12:01", "40.2,-75.4,Fire: ALARM,2016-01-15 12:09")
    assert (with_header.has_header, with_header.names, len(with_header.rows)) == (True, ("lat", "lng", "title", "when"), 1)
    assert (without.has_header, without.names[0], len(without.rows)) == (False, "column_1", 2)


def test_the_sample_stops_at_the_limit_and_counts_rows_of_the_wrong_width():
    lines = ["id,received_at"] + [f"C{i},2016-01-15T12:00:00Z" for i in range(10)] + ["C10,2016-01-15T12:00:00Z,extra"]
    assert len(Sample.from_lines((x.encode() for x in lines), limit=4).rows) == 4
    s = Sample.from_lines(x.encode() for x in lines)
    assert (len(s.rows), s.bad_rows, len(s.lines)) == (10, 1, 12)


def test_an_empty_file_or_a_repeated_column_name_is_an_error_that_says_what_was_expected():
    with pytest.raises(InspectError, match="the file is empty; expected a CSV header"):
        Sample.from_lines([])
    with pytest.raises(InspectError, match="names the columns 'a' twice; rename one"):
        sample("a,b,a", "1,2,3")


@pytest.mark.parametrize(
    ("values", "pattern", "naive"),
    [
        (["2026-05-24T23:50:57.000", "2026-05-24T23:51:18.000"], "iso", True),
        (["2016-01-15 12:01", "2016-01-15 12:06"], "iso", True),
        (["2016-01-23T11:02:11-05:00", "2016-01-23T16:02:11Z"], "iso", False),
        (["01/21/2022 01:43:00 PM", "12/31/2016 11:57:56 PM"], "%m/%d/%Y %I:%M:%S %p", True),
        (["11/09/2011 10:04:00 PM +0000", "11/09/2011 07:04:00 PM +0000"], "%m/%d/%Y %I:%M:%S %p %z", False),
        (["2016/01/15 12:01:00", "2016/01/15 13:01:00"], "%Y/%m/%d %H:%M:%S", True),
    ],
)
def test_time_format_names_the_pattern_and_whether_the_times_are_naive(values, pattern, naive):
    tf = time_format("t", values + [""])
    assert tf is not None and (tf.pattern, tf.naive, tf.n, tf.share) == (pattern, naive, 2, 1.0)


def test_a_time_pattern_must_read_90_percent_of_the_values_and_names_one_it_does_not():
    values = ["2016-01-15T12:00:00Z"] * 89 + ["yesterday"] * 11
    assert time_format("t", values) is None  # 89 %: below
    tf = time_format("t", ["2016-01-15T12:00:00Z"] * 90 + ["soon"] * 10)
    assert tf is not None and (tf.share, tf.unread) == (0.9, "soon")
    assert time_format("t", ["2016-01-15T12:00:00Z"] * 3).unread is None


def test_masked_row_hides_the_named_columns_and_says_so():
    assert masked_row(b"C1,9 ELM ST,2", ["id", "addr", "p"], ["addr"]) == "id='C1', addr=[masked], p='2'"
    assert "values masked" in masked_row(b"C1,9 ELM ST", ["id", "addr", "p"], ["addr"])
    assert masked_row(b"\xff,1", ["a", "b"], []) == "[not UTF-8 CSV: not shown]"
    # coordinates in an example row point at a block, not at a caller's home
    assert masked_row(b'C1,40.1215443,-75.3399012,"POINT (-75.3399012 40.1215443)"', ["id", "lat", "lng", "loc"], []) == (
        "id='C1', lat='40.121', lng='-75.339', loc='POINT (-75.339 40.121)'"
    )


def test_agency_name_takes_the_words_before_the_first_number():
    assert agency_name("seattle-fire-911-mva-2010-2015.csv") == "seattle-fire"
    assert agency_name("/x/Cincinnati_Fire_EMS.csv") == "cincinnati-fire-ems"


# --------------------------------------------------------------------------- proposals


def test_a_unit_level_export_is_grouped_by_its_call_id_and_its_status_columns_are_found():
    s = sample(
        "Call Number,Unit ID,Unit Type,Call Type,Received DtTm,Dispatch DtTm,Response DtTm,On Scene DtTm,Transport DtTm,"
        "Available DtTm,Priority,Address,location",
        "1,E1,ENGINE,Structure Fire,01/21/2022 01:43:00 PM,01/21/2022 01:44:00 PM,01/21/2022 01:45:00 PM,"
        '01/21/2022 01:50:00 PM,,01/21/2022 02:30:00 PM,3,100 Block of MARKET ST,"(37.79, -122.39)"',
        "1,T2,TRUCK,Structure Fire,01/21/2022 01:43:00 PM,01/21/2022 01:44:10 PM,01/21/2022 01:45:00 PM,"
        '01/21/2022 01:52:00 PM,,01/21/2022 02:40:00 PM,3,100 Block of MARKET ST,"(37.79, -122.39)"',
        "2,M5,MEDIC,Medical Incident,01/21/2022 02:02:00 PM,01/21/2022 02:03:00 PM,01/21/2022 02:04:00 PM,"
        '01/21/2022 02:10:00 PM,01/21/2022 02:30:00 PM,01/21/2022 03:10:00 PM,E,MISSION ST/16TH ST,"(37.76, -122.42)"',
    )
    p = propose(s, name="sf")
    assert (p.id_column, p.grain, p.unit) == ("Call Number", "unit", "Unit ID")
    assert (p.received.column, p.received.pattern, p.received.naive, p.naive) == ("Received DtTm", "%m/%d/%Y %I:%M:%S %p", True, True)
    assert {s: t.column for s, t in p.statuses.items()} == {
        "dispatched": "Dispatch DtTm",
        "en_route": "Response DtTm",
        "on_scene": "On Scene DtTm",
        "closed": "Available DtTm",
    }
    assert (p.lat, p.point, p.point_form, p.priority, p.masked) == (None, "location", "latlng", "Priority", ("Address",))
    assert any("'Transport DtTm' are not schema statuses" in n for n in p.notes)
    assert any("TIMES WITHOUT A UTC OFFSET" in w and "--timezone" in w for w in p.warnings)
    assert any("PRIORITY 'Priority' holds values outside 1..5 (E)" in w for w in p.warnings)
    assert propose(s, name="sf", timezone="America/Los_Angeles").warnings == p.warnings[:1]  # the priority warning only


def test_an_id_repeated_without_a_unit_column_stays_a_call_level_id():
    s = sample(
        "Incident Number,Type,Datetime,Latitude,Longitude",
        "F1,Aid Response,2022-01-21T13:43:00-08:00,47.6,-122.3",
        "F1,Aid Response,2022-01-21T13:43:00-08:00,47.6,-122.3",
        "F2,Illegal Burn,2022-01-21T14:00:00-08:00,47.7,-122.3",
    )
    p = propose(s, name="seattle")
    assert (p.id_column, p.grain, p.unit, p.naive, p.warnings) == ("Incident Number", "call", None, False, [])
    assert any("'Incident Number' repeats 1 times" in n and "duplicate_id" in n for n in p.notes)


def test_a_wkt_point_column_is_read_as_lng_lat_and_a_headerless_file_by_value():
    wkt = propose(sample("id,when,kind,case_location", "A,2022-01-21T13:43:00Z,Alarms,POINT (-122.42 37.77)"), name="x")
    assert (wkt.point, wkt.point_form, wkt.lat) == ("case_location", "wkt", None)
    headerless = propose(sample("40.1,-75.3,EMS: FALL VICTIM,2016-01-15 12:01,SPRINGFIELD,CEDAR RD & PINE AVE"), name="x")
    assert (headerless.lat, headerless.lng, headerless.call_type, headerless.received.column) == (
        "column_1",
        "column_2",
        "column_3",
        "column_4",
    )
    assert headerless.masked == ("column_6",) and headerless.call_type_extract is not None


def test_a_file_without_a_time_column_cannot_be_proposed_and_the_error_shows_the_first_row():
    with pytest.raises(InspectError, match=r"no column holds times .*first row: a='x', b='1'"):
        propose(sample("a,b", "x,1"), name="x")


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_files_get_the_columns_their_built_in_format_reads(name):
    path = data_file(name)
    if path is None:
        pytest.skip(f"{name} not in ../shared/data")
    p = propose(read_sample(path), name=agency_name(name))
    expected = {
        "montgomery-pa-911-2015-12-to-2016-08.csv": ("timeStamp", "title", "lat", "lng", None, True),
        "montgomery-pa-911-sample-2016-2018.csv": ("column_4", "column_3", "column_1", "column_2", None, True),
        "cincinnati-fire-ems-60-days.csv": ("create_time_incident", "incident_type_id", "latitude", "longitude", None, True),
        "seattle-fire-911-mva-2010-2015.csv": ("Datetime", "Type", "Latitude", "Longitude", "Incident Number", False),
    }[name]
    assert (p.received.column, p.call_type, p.lat, p.lng, p.id_column, p.naive) == expected
    assert p.grain == "call"
    assert {"addr", "desc", "Address", "column_6"} & set(p.masked) or name.startswith("cincinnati")


# --------------------------------------------------------------------------- through the engine


def _read(lines, mapping, timezone=None):
    return summarize(parse_lines(lines, mapping, origin="<test>", timezone=timezone))


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_the_proposal_reads_a_real_file_as_its_built_in_mapping_does_given_only_the_zone(name):
    """Without editing, except the zone of naive times: as many calls and as many rejected rows as the built-in mapping reads."""
    path = data_file(name)
    if path is None:
        pytest.skip(f"{name} not in ../shared/data")
    s = read_sample(path)
    p = propose(s, name=agency_name(name), timezone=REAL_FILES[name])
    mapping, error = _validate(render_toml(p), name)
    assert error is None and mapping is not None
    builtin = {
        "montgomery-pa-911-2015-12-to-2016-08.csv": "montgomery-pa",
        "montgomery-pa-911-sample-2016-2018.csv": "montgomery-pa-sample",
        "cincinnati-fire-ems-60-days.csv": "cincinnati-fire",
        "seattle-fire-911-mva-2010-2015.csv": "seattle-fire",
    }[name]
    ours, theirs = _read(s.lines, mapping), _read(s.lines, builtin_mappings()[builtin])
    assert ours.calls == theirs.calls and ours.rejected == theirs.rejected
    assert ours.calls >= 0.99 * len(s.rows)
    assert {cat for _, cat in ours.types} == {cat for _, cat in theirs.types}


def test_without_a_zone_the_proposal_does_not_validate_and_says_what_to_write():
    p = propose(read_sample(SF_SAMPLE), name="sf-fire")
    text = render_toml(p)
    mapping, error = _validate(text, "proposal")
    assert mapping is None and error is not None and f"timezone is '{ZONE_PLACEHOLDER}', not an IANA time zone" in error
    read = _read(read_sample(SF_SAMPLE).lines, _validate(_without_placeholder(text), "proposal")[0])
    assert read.calls == 0 and list(read.rejected) == ["impossible_timestamp"]
    assert "no UTC offset and no time zone: pass --timezone ZONE" in read.examples["impossible_timestamp"][2]


def test_the_worked_example_reads_36_calls_grouped_from_72_unit_rows_with_one_refused_update():
    import csv

    with open(SF_SAMPLE, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    first = {}
    for r in rows:
        first.setdefault(r["Call Number"], r)
    from streams.ingest.mapping import load_mapping
    from streams.ingest.sources import Row, read_source

    calls = [x for x in read_source(SF_SAMPLE, load_mapping(SF_MAPPING)) if isinstance(x, Row)]
    assert [c.call["id"] for c in calls] == list(first)  # one call per Call Number, in the order of their first rows
    assert len(rows) == 72 and len(calls) == 36
    priority = {"3": 1, "E": 1, "2": 3, "I": None}
    assert [c.call["priority"] for c in calls] == [priority[first[c.call["id"]]["Priority"]] for c in calls]
    category = {c.call["call_type"]: c.call["category"] for c in calls}
    assert category == {
        "Medical Incident": "EMS",
        "Structure Fire": "FIRE",
        "Alarms": "FIRE",
        "Traffic Collision": "TRAFFIC",
        "Outside Fire": "FIRE",
        "Citizen Assist / Service Call": "OTHER",
        "Gas Leak (Natural and LP Gases)": "FIRE",
        "Water Rescue": "FIRE",
        "Elevator / Escalator Rescue": "FIRE",
        "Other": "OTHER",
        "Vehicle Fire": "FIRE",
        "Smoke Investigation (Outside)": "FIRE",
    }
    fire = next(c for c in calls if c.call["call_type"] == "Structure Fire")
    units = [r["Unit ID"] for r in rows if r["Call Number"] == fire.call["id"]]
    dispatched = [u for u in fire.updates if u["status"] == "dispatched"]
    assert len(units) == 5 and len(dispatched) == 1 and dispatched[0]["unit"] in units
    skewed = [c for c in calls if c.refused]
    assert [(c.call["id"], [r.reason for r in c.refused]) for c in skewed] == [("220210346", ["status_before_received"])]
    assert [u["status"] for u in skewed[0].updates] == ["en_route", "on_scene", "closed"]
    nowhere = [c for c in calls if c.call["lat"] is None]
    assert len(nowhere) == 1 and first[nowhere[0].call["id"]]["case_location"] == ""


def test_the_command_prints_the_proposal_the_summary_by_reason_and_masks_addresses(capsys, tmp_path):
    out_file = tmp_path / "sf.toml"
    status = main([str(SF_SAMPLE), "--timezone", "America/Los_Angeles", "--write-mapping", str(out_file), "--name", "sf-fire"])
    out = capsys.readouterr().out
    assert status == 0
    assert "proposed mapping (validates)" in out and 'grain = "unit"' in out
    assert "36 calls" in out and "refused updates (the call is kept), by reason:" in out and "status_before_received: 1" in out
    assert "Address=[masked]" in out and "100 Block of" not in out and "masked in example rows: Address" in out
    assert not re.search(r"\d+\.\d{4,}", out)  # no coordinate finer than 3 decimals (about 100 m)
    assert out_file.read_text() in out
    assert main([str(SF_SAMPLE), "--write-mapping", str(out_file)]) == 2  # not overwritten
    assert "exists; not overwritten" in capsys.readouterr().err


def test_the_command_without_a_zone_exits_1_and_the_last_words_say_why_nothing_was_read(capsys):
    assert main([str(SF_SAMPLE)]) == 1
    out = capsys.readouterr().out
    assert "DOES NOT VALIDATE YET" in out and "TIMES WITHOUT A UTC OFFSET" in out
    assert "impossible_timestamp: 72" in out


def test_the_command_refuses_a_zone_that_is_not_iana_and_a_missing_file(capsys, tmp_path):
    assert main([str(SF_SAMPLE), "--timezone", "Pacific"]) == 2
    assert "--timezone 'Pacific' is not an IANA time zone" in capsys.readouterr().err
    assert main([str(tmp_path / "nope.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_all_reads_the_whole_file_with_a_given_mapping_and_a_progress_bar_on_stderr(capsys):
    assert main([str(SF_SAMPLE), "--mapping", str(SF_MAPPING), "--all"]) == 0
    captured = capsys.readouterr()
    assert "mapping: " in captured.out and "(given: no proposal made)" in captured.out
    assert "read (the whole file): 36 calls" in captured.out and "'I'    -> none: not in the map" in captured.out
    assert "reading sf-fire-calls-sample.csv" in captured.err  # tqdm


def test_a_mapping_the_header_does_not_fit_is_an_error_naming_the_missing_columns(capsys):
    assert main([str(SF_SAMPLE), "--mapping", "seattle-fire"]) == 2
    assert "lacks the columns" in capsys.readouterr().err


def test_a_watchfloor_file_gets_its_category_column_with_the_call_type_as_fallback_and_an_empty_status_column():
    lines = [
        "id,received_at,category,call_type,priority,lat,lng,agency,dispatched_at,en_route_at,on_scene_at,closed_at,unit",
        "C1,2016-01-23T11:02:11-05:00,Traffic,VEHICLE ACCIDENT,2,40.12,-75.34,montgomery-pa,"
        "2016-01-23T16:05:40Z,,,2016-01-23T17:00:00Z,M-41",
        "C2,2016-01-23T11:03:11-05:00,,FALL,,40.1,-75.3,montgomery-pa,,,,,",
    ]
    p = propose(sample(*lines), name="wf")
    assert (p.category, p.call_type, p.agency_column, p.unit, p.id_column) == ("category", "call_type", "agency", "unit", "id")
    assert {s: t.column for s, t in p.statuses.items()} == {
        "dispatched": "dispatched_at",
        "closed": "closed_at",
        "en_route": "en_route_at",
        "on_scene": "on_scene_at",
    }
    mapping, error = _validate(render_toml(p), "wf")
    assert error is None
    read = _read([x.encode() for x in lines], mapping)
    assert (read.calls, read.updates, read.types) == (2, 2, Counter({("VEHICLE ACCIDENT", "TRAFFIC"): 1, ("FALL", "EMS"): 1}))


def test_seattle_2022_local_times_fit_the_built_in_header_and_the_proposal_reads_them_in_the_zone_given(tmp_path, capsys):
    path = tmp_path / "seattle-2022.csv"
    path.write_text(
        "Address,Type,Datetime,Latitude,Longitude,Report Location,Incident Number\n"
        '1 Pine St,Aid Response,01/21/2022 01:43:00 PM,47.61,-122.34,"(47.61, -122.34)",F220000001\n'
        '2 Pike St,Illegal Burn,01/21/2022 11:05:00 PM,47.60,-122.33,"(47.60, -122.33)",F220000002\n'
    )
    assert main([str(path), "--timezone", "America/Los_Angeles"]) == 0
    out = capsys.readouterr().out
    assert "the header fits 'seattle-fire'" in out
    assert "        1  EMS      Aid Response" in out and "        1  FIRE     Illegal Burn" in out
    assert "inspect: 2 calls read; 0 rows rejected" in out and "Address=[masked]" not in out  # nothing rejected: no example row
