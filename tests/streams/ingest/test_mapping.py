"""Declarative source mappings: loading and validating them, and what the engine reads with them.

Time zones, one row per unit, combined coordinates, priority maps, categories, clock skew, the watchfloor
format without its optional columns, and the replay's last line when nothing is read.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from streams.ingest.history import read_history
from streams.ingest.mapping import MappingError, builtin_mappings, load_mapping, parse_mapping
from streams.ingest.replay import main as replay_main
from streams.ingest.replay import read_plan
from streams.ingest.schema import Category, normalize_category, parse_event
from streams.ingest.sources import FORMATS, Rejected, Row, UnknownFormat, parse_lines, parse_location, read_source

SF_UNITS = Path(__file__).parent / "data" / "sf-fire-units.csv"
NOW = 2e9

# A mapping for the San Francisco Fire "Calls for Service" layout (one row per unit), written for the fixture above.
SF_MAPPING = """
name = "sf-fire-units"
description = "San Francisco Fire Department Calls for Service, one row per unit"
grain = "unit"
timezone = "America/Los_Angeles"
time_formats = ["%m/%d/%Y %I:%M:%S %p"]

[fields]
id = "Call Number"
received_at = "Received DtTm"
call_type = "Call Type"
unit = "Unit ID"
agency = { value = "sffd" }
location = { column = "case_location", form = "point" }
priority = { column = "Priority", map = { "3" = 1, E = 1, A = 2, "2" = 3, B = 3, C = 4 } }

[[statuses]]
status = "dispatched"
column = "Dispatch DtTm"

[[statuses]]
status = "en_route"
column = "Response DtTm"

[[statuses]]
status = "on_scene"
column = "On Scene DtTm"

[[statuses]]
status = "closed"
column = "Available DtTm"
"""

SEATTLE_HEADER = b"Address,Type,Datetime,Latitude,Longitude,Report Location,Incident Number"
WATCHFLOOR_MIN = b"received_at,call_type,lat,lng"


def lines(*rows: str | bytes) -> list[bytes]:
    return [r if isinstance(r, bytes) else r.encode() for r in rows]


def rows_of(items) -> list[Row]:
    return [i for i in items if isinstance(i, Row)]


# --------------------------------------------------------------------------- loading


def test_builtin_mappings_are_the_six_formats_shipped_as_toml_files():
    """builtin_mappings() loads the six mapping files shipped in the package, each named as its file, and FORMATS holds them."""
    mappings = builtin_mappings()
    assert list(mappings) == ["montgomery-pa", "montgomery-pa-sample", "cincinnati-fire", "seattle-fire", "seattle-fire-soda", "watchfloor"]
    assert FORMATS == mappings
    folder = Path(__file__).parents[3] / "streams" / "ingest" / "mappings"
    assert sorted(p.stem for p in folder.glob("*.toml")) == sorted(mappings)
    assert mappings["seattle-fire"].timezone == mappings["seattle-fire-soda"].timezone == "America/Los_Angeles"
    assert mappings["montgomery-pa"].timezone == mappings["cincinnati-fire"].timezone == "America/New_York"
    assert mappings["watchfloor"].timezone is None


def test_load_mapping_reads_a_file_and_names_it_in_errors(tmp_path):
    """load_mapping reads a TOML file; a broken one raises MappingError naming the file."""
    good = tmp_path / "sf.toml"
    good.write_text(SF_MAPPING)
    assert load_mapping(good).name == "sf-fire-units"
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(MappingError, match=r"bad\.toml: not valid TOML"):
        load_mapping(bad)
    with pytest.raises(MappingError, match=r"missing\.toml: cannot read the mapping"):
        load_mapping(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('grain = "unit"', 'grain = "units"'), r"m\.toml: grain is 'units'; expected \"call\""),
        (('timezone = "America/Los_Angeles"', 'timezone = "Pacific"'), r"timezone is 'Pacific', not an IANA time zone"),
        (('time_formats = ["%m/%d/%Y %I:%M:%S %p"]', 'time_formats = ["%m/%Q"]'), r"time_formats '%m/%Q' is not a strptime pattern"),
        (('id = "Call Number"', 'ident = "Call Number"'), r"fields\.ident is not a known key"),
        (('id = "Call Number"', ""), r"fields\.id is missing; grain = \"unit\" groups"),
        (('form = "point"', 'form = "wkt"'), r"fields\.location\.form is 'wkt'; expected \"pair\""),
        (("E = 1, A = 2", "E = 0, A = 2"), r"fields\.priority\.map\.E is 0; expected an integer 1 \(highest\) to 5"),
        (('status = "en_route"', 'status = "enroute"'), r"statuses\[1\]\.status is 'enroute'; expected one of dispatched, en_route"),
        (('unit = "Unit ID"', 'unit = "Unit ID"\nreceived_at_x = 1'), r"fields\.received_at_x is not a known key"),
        (
            ('call_type = "Call Type"', 'call_type = { column = "Call Type", extract = "(" }'),
            r"fields\.call_type\.extract is '\(', not a regular",
        ),
    ],
)
def test_parse_mapping_errors_name_the_key_the_value_and_what_to_write(change, message):
    """Each mistake in a mapping raises MappingError naming the origin, the key, the value found and what is expected."""
    old, new = change
    assert old in SF_MAPPING
    with pytest.raises(MappingError, match=message):
        parse_mapping(SF_MAPPING.replace(old, new, 1), "m.toml")


def test_category_rules_and_a_fixed_default_are_validated():
    """A category rule must name a known category; a default may be 'keywords' or a category."""
    base = 'name = "x"\n[fields]\nreceived_at = "t"\ncall_type = "k"\n[fields.category]\n'
    with pytest.raises(MappingError, match=r"fields\.category\.rules\[0\]\.category is 'MEDICAL'; expected one of EMS"):
        parse_mapping(base + "rules = [{ pattern = 'x', category = 'MEDICAL' }]")
    m = parse_mapping(base + "default = 'OTHER'")
    assert m.category_default is Category.OTHER


# --------------------------------------------------------------------------- time zones


def test_seattle_2022_local_times_read_in_seattle_time_with_the_builtin_mapping():
    """The 2022-on Seattle export (same header, 12-hour local times, no offset) reads with seattle-fire as Seattle wall time."""
    (row,) = parse_lines(lines(SEATTLE_HEADER, "1 Main St,Aid Response,01/21/2022 01:43:00 PM,47.6,-122.3,,F220001"))
    assert row.call["received_at"] == "2022-01-21T21:43:00Z"
    assert row.call["category"] == "EMS"


def test_timezone_option_wins_over_the_mapping_zone_and_offsets_win_over_both():
    """--timezone (timezone=) beats the mapping's zone for naive times; a stated offset is read at that offset whatever the zone."""
    data = lines(
        SEATTLE_HEADER,
        "1 Main St,Aid Response,01/21/2022 01:43:00 PM,47.6,-122.3,,F1",
        "1 Main St,Aid Response,01/21/2022 01:43:00 PM +0000,47.6,-122.3,,F2",
    )
    a, b = parse_lines(data, timezone="America/New_York")
    assert (a.call["received_at"], b.call["received_at"]) == ("2022-01-21T18:43:00Z", "2022-01-21T13:43:00Z")


def test_naive_times_without_any_zone_are_refused_saying_what_to_do():
    """Without --timezone and without a zone in the mapping, a naive time is refused, the detail saying to pass --timezone."""
    (rej,) = parse_lines(lines(WATCHFLOOR_MIN, "2022-01-21 13:43:00,FALL,47.6,-122.3"))
    assert isinstance(rej, Rejected) and rej.reason == "impossible_timestamp"
    assert rej.detail == (
        "column 'received_at' is '2022-01-21 13:43:00': no UTC offset and no time zone: pass --timezone ZONE or set timezone in the mapping"
    )
    (row,) = parse_lines(lines(WATCHFLOOR_MIN, "2022-01-21 13:43:00,FALL,47.6,-122.3"), timezone="Europe/Paris")
    assert row.call["received_at"] == "2022-01-21T12:43:00Z"


def test_dst_in_another_zone_skipped_wall_time_refused_repeated_one_read_as_first():
    """In Los Angeles 2022-03-13 02:30 does not exist (refused); 2022-11-06 01:30 happens twice and reads as PDT (08:30Z)."""
    gap, fold = parse_lines(
        lines(
            SEATTLE_HEADER, "a,Aid Response,03/13/2022 02:30:00 AM,47.6,-122.3,,F1", "a,Aid Response,11/06/2022 01:30:00 AM,47.6,-122.3,,F2"
        )
    )
    assert isinstance(gap, Rejected) and gap.reason == "impossible_timestamp" and "America/Los_Angeles" in gap.detail
    assert fold.call["received_at"] == "2022-11-06T08:30:00Z"


def test_a_zone_that_changes_at_the_half_hour_is_read_exactly():
    """Lord Howe Island moves its clocks by 30 minutes at 02:00: 02:15 on that night does not exist, 02:45 does."""
    data = lines(WATCHFLOOR_MIN, "2022-10-02 02:15:00,X,0,0", "2022-10-02 02:45:00,X,0,0", "2022-10-02 01:59:00,X,0,0")
    gap, after, before = parse_lines(data, timezone="Australia/Lord_Howe")
    assert isinstance(gap, Rejected)
    assert after.call["received_at"] == "2022-10-01T15:45:00Z"  # +11:00
    assert before.call["received_at"] == "2022-10-01T15:29:00Z"  # +10:30


def test_a_timezone_that_is_not_an_iana_zone_raises_at_the_call(tmp_path):
    """read_source(timezone=) with an unknown zone raises MappingError before any row is read."""
    path = tmp_path / "w.csv"
    path.write_bytes(WATCHFLOOR_MIN + b"\n")
    with pytest.raises(MappingError, match="'Mars/Base' is not an IANA time zone"):
        read_source(path, timezone="Mars/Base")


# --------------------------------------------------------------------------- one row per unit


def test_unit_grain_emits_each_call_once_with_first_and_last_statuses_across_units():
    """The SF unit-level fixture gives 3 calls in the order of their first rows, one rejected row in its place; the call's
    dispatch, en route and on scene are the first over its units, closed the last, each naming its unit."""
    items = list(read_source(SF_UNITS, parse_mapping(SF_MAPPING)))
    assert [(type(i).__name__, i.line) for i in items] == [("Row", 2), ("Row", 4), ("Rejected", 7), ("Row", 8)]
    first = items[0]
    assert first.call["id"] == "230010001" and first.call["received_at"] == "2023-03-14T08:58:10Z"
    assert [(u["status"], u["at"], u["unit"]) for u in first.updates] == [
        ("dispatched", "2023-03-14T08:59:05Z", "E07"),
        ("en_route", "2023-03-14T08:59:50Z", "E07"),
        ("on_scene", "2023-03-14T09:04:12Z", "E07"),
        ("closed", "2023-03-14T11:10:00Z", "M55"),  # the last unit available, though RC3 is listed later
    ]
    assert (first.call["lat"], first.call["lng"], first.call["priority"], first.call["category"]) == (37.754722, -122.418512, 1, "EMS")
    assert items[2].reason == "impossible_timestamp" and "'Received DtTm'" in items[2].detail
    for row in rows_of(items)[:2]:  # the third has no location, for the validator to refuse
        parse_event(json.dumps(row.call).encode(), now=NOW)
        for u in row.updates:
            parse_event(json.dumps(u).encode(), now=NOW)


def test_unit_grain_skewed_dispatch_refuses_that_update_only_and_keeps_the_call():
    """T10's dispatch, 300 s before the call, is refused on its own; B02's, 30 s before, is within 120 s and moved to received."""
    call = rows_of(read_source(SF_UNITS, parse_mapping(SF_MAPPING)))[1]
    assert call.call["id"] == "230010002"
    assert [(u["status"], u["at"], u["unit"]) for u in call.updates][0] == ("dispatched", "2023-03-14T17:15:00Z", "B02")
    (refused,) = call.refused
    assert (refused.status, refused.reason) == ("dispatched", "status_before_received")
    assert refused.update["at"] == "2023-03-14T17:10:00Z" and refused.update["unit"] == "T10"
    assert "'Dispatch DtTm'" in refused.detail and "300 s before" in refused.detail and "120 s" in refused.detail


def test_unit_grain_unmapped_priority_and_missing_location_keep_the_call():
    """Call 230010004: priority 'I' is not in the map (priority None, listed in unmapped), no location gives lat/lng None."""
    call = rows_of(read_source(SF_UNITS, parse_mapping(SF_MAPPING)))[2]
    assert (call.call["priority"], call.unmapped) == (None, (("priority", "I"),))
    assert (call.call["lat"], call.call["lng"]) == (None, None)
    assert call.call["category"] == "TRAFFIC"


# --------------------------------------------------------------------------- cells


@pytest.mark.parametrize(
    ("text", "form", "expected"),
    [
        ("(47.654152, -122.354466)", "pair", (47.654152, -122.354466)),
        ("47.654152,-122.354466", "pair", (47.654152, -122.354466)),
        ("(0, 0)", "pair", (0.0, 0.0)),
        ("POINT (-122.42 37.77)", "point", (37.77, -122.42)),
        ("point(-122.42 37.77)", "point", (37.77, -122.42)),
        ("POINT (-122.42)", "point", (None, None)),
        ("(47.6, north)", "pair", (47.6, None)),
        ("", "pair", (None, None)),
    ],
)
def test_combined_coordinates_in_both_forms(text, form, expected):
    """A '(lat, lng)' pair is latitude first, a WKT POINT longitude first; what is not a number becomes None."""
    assert parse_location(text, form) == expected


def test_combined_pair_column_read_through_a_mapping():
    """A mapping with location form 'pair' reads Seattle's Report Location column."""
    m = parse_mapping(
        'name = "s"\ntimezone = "UTC"\n[fields]\nreceived_at = "t"\ncall_type = "k"\nlocation = { column = "loc", form = "pair" }\n'
    )
    (row,) = parse_lines(lines("t,k,loc", '2022-01-01 00:00,x,"(47.6, -122.3)"'), m)
    assert (row.call["lat"], row.call["lng"]) == (47.6, -122.3)


PRIORITY_MAPPING = """
name = "p"
timezone = "UTC"
[fields]
received_at = "t"
call_type = "k"
priority = { column = "p", map = { "3" = 1, E = 1, A = 2, "2" = 3, B = 3, C = 4 } }
"""


def test_priority_map_with_letters_any_case_and_unknown_values_counted_not_rejected():
    """SF's 3 and E (any case) are 1, A 2, 2 and B 3, C 4; an unknown 'I' gives None and is listed; empty is None, unlisted."""
    data = lines("t,k,p", *(f"2022-01-01 00:00,x,{p}" for p in ("3", "e", "E", "A", "2", "b", "C", "I", "")))
    rows = rows_of(parse_lines(data, parse_mapping(PRIORITY_MAPPING)))
    assert [r.call["priority"] for r in rows] == [1, 1, 1, 2, 3, 3, 4, None, None]
    assert [r.unmapped for r in rows][-2:] == [(("priority", "I"),), ()]


def test_priority_unmapped_reject_refuses_the_row_naming_the_map():
    """unmapped = "reject" refuses a row whose priority is not in the map, naming the column, the value and the map's keys."""
    m = parse_mapping(PRIORITY_MAPPING.replace("C = 4 }", 'C = 4 }, unmapped = "reject"'))
    (rej,) = parse_lines(lines("t,k,p", "2022-01-01 00:00,x,I"), m)
    assert rej.reason == "bad_field" and "column 'p' is 'I'; expected one of 2, 3, a, b, c, e" in rej.detail


# --------------------------------------------------------------------------- categories


@pytest.mark.parametrize(
    ("text", "category"),
    [
        # Seattle Real Time Fire 911 types
        ("Aid Response", "EMS"),
        ("Aid Response Yellow", "EMS"),
        ("BC Aid Response", "EMS"),
        ("Medic Response", "EMS"),
        ("Medic Response- 7 per Rule", "EMS"),
        ("Low Acuity", "EMS"),
        ("Triaged Incident", "EMS"),
        ("Nurseline/AMR", "EMS"),
        ("Trans to AMR", "EMS"),
        ("Automatic Medical Alarm", "EMS"),
        ("Illegal Burn", "FIRE"),
        ("Rubbish Fire", "FIRE"),
        ("Brush Fire", "FIRE"),
        ("Auto Fire Alarm", "FIRE"),
        ("Automatic Fire Alarm Resd", "FIRE"),
        ("Natural Gas Odor", "FIRE"),
        ("Motor Vehicle Accident", "TRAFFIC"),
        ("MVI - Motor Vehicle Incident", "TRAFFIC"),
        ("MVI Freeway", "TRAFFIC"),
        # San Francisco Fire "Call Type" values
        ("Medical Incident", "EMS"),
        ("Structure Fire", "FIRE"),
        ("Alarms", "FIRE"),
        ("Outside Fire", "FIRE"),
        ("Vehicle Fire", "FIRE"),
        ("Gas Leak (Natural and LP Gases)", "FIRE"),
        ("Electrical Hazard", "FIRE"),
        ("Smoke Investigation (Outside)", "FIRE"),
        ("Traffic Collision", "TRAFFIC"),
        ("Assist Police", "POLICE"),
        ("Citizen Assist / Service Call", "OTHER"),
        # Cincinnati CAD codes
        ("OUTDR - 67A2 ILLEGAL BURN", "FIRE"),
        ("BURN - 7A3 MINOR", "EMS"),
        ("SICK - 26A8 PAIN", "EMS"),
        ("INVEST - 69D6O ODOR OF SMOKE", "FIRE"),
        ("=EMS1 - ALS1 RESPONSE", "EMS"),
        # Montgomery titles: the head decides
        ("Fire: BURN VICTIM", "FIRE"),
        ("EMS: BURN VICTIM", "EMS"),
    ],
)
def test_keyword_normalizer_files_real_types(text, category):
    """normalize_category files each real call type of Seattle, San Francisco, Cincinnati and Montgomery as a person would."""
    assert normalize_category(text).value == category


@pytest.mark.parametrize(
    ("kind", "category"),
    [
        ("Aid Response", "EMS"),
        ("Hang-Up- Aid", "EMS"),
        ("Mutual Aid, Medic", "EMS"),
        ("Illegal Burn", "FIRE"),
        ("1RED 1 Unit", "FIRE"),
        ("AFA4 - Auto Alarm 2 + 1 + 1", "FIRE"),
        ("Scenes Of Violence 7", "POLICE"),
        ("Assault w/Weapons, Aid", "POLICE"),
        ("Motor Vehicle Incident Freeway", "TRAFFIC"),
        ("Rescue Elevator", "OTHER"),
    ],
)
def test_seattle_mapping_rules_file_seattle_types(kind, category):
    """The seattle-fire mapping's own rules file Seattle's types, before the keyword normalizer."""
    (row,) = parse_lines(lines(SEATTLE_HEADER, f'a,"{kind}",01/21/2022 01:43:00 PM,47.6,-122.3,,F1'))
    assert row.call["category"] == category and row.call["call_type"] == kind


# --------------------------------------------------------------------------- clock skew


WATCHFLOOR_STATUS = b"id,received_at,call_type,lat,lng,dispatched_at,on_scene_at,unit"


@pytest.mark.parametrize(
    ("dispatched", "tolerance", "kept", "refused"),
    [
        ("2016-01-23T16:09:00Z", None, "2016-01-23T16:10:00Z", 0),  # 60 s before, within the default 120 s: moved to received
        ("2016-01-23T16:07:59Z", None, None, 1),  # 121 s before: refused
        ("2016-01-23T16:07:59Z", 300.0, "2016-01-23T16:10:00Z", 0),  # within a tolerance of 300 s
        ("2016-01-23T16:09:59Z", 0.0, None, 1),  # no tolerance
        ("2016-01-23T16:11:00Z", 0.0, "2016-01-23T16:11:00Z", 0),
    ],
)
def test_status_before_received_is_clamped_within_the_tolerance_and_refused_beyond(dispatched, tolerance, kept, refused):
    """A dispatch before the call is moved to the received time within the tolerance, refused alone beyond it; the call and its
    on-scene update are kept either way."""
    data = lines(WATCHFLOOR_STATUS, f"C1,2016-01-23T16:10:00Z,FALL,40.1,-75.3,{dispatched},2016-01-23T16:20:00Z,M-41")
    (row,) = parse_lines(data, status_tolerance=tolerance)
    got = {u["status"]: u["at"] for u in row.updates}
    assert got.get("dispatched") == kept and got["on_scene"] == "2016-01-23T16:20:00Z"
    assert len(row.refused) == refused
    if refused:
        assert row.refused[0].update == {
            "type": "update", "v": 1, "call_id": "C1", "status": "dispatched", "at": dispatched, "unit": "M-41", "source": "watchfloor",
        }  # fmt: skip


def test_status_tolerance_from_the_mapping_and_drop_rule():
    """status_tolerance_s in a mapping sets the tolerance; before_received = "drop" omits an earlier status silently."""
    text = (
        'name = "s"\ntimezone = "UTC"\nstatus_tolerance_s = 600\n[fields]\nreceived_at = "t"\ncall_type = "k"\n'
        '[[statuses]]\nstatus = "dispatched"\ncolumn = "d"\n[[statuses]]\nstatus = "closed"\ncolumn = "c"\nbefore_received = "drop"\n'
    )
    (row,) = parse_lines(lines("t,k,d,c", "2022-01-01 00:10,x,2022-01-01 00:01,2022-01-01 00:09:59"), parse_mapping(text))
    assert [(u["status"], u["at"]) for u in row.updates] == [("dispatched", "2022-01-01T00:10:00Z")]
    assert row.refused == ()


# --------------------------------------------------------------------------- watchfloor without optional columns


def test_watchfloor_without_unit_and_other_optional_columns_is_detected_and_read(tmp_path):
    """A watchfloor CSV with only received_at, category, lat and lng is detected and read; absent columns are None, id made up."""
    path = tmp_path / "w.csv"
    path.write_bytes(b"received_at,category,lat,lng,dispatched_at\n2016-01-23T16:10:00Z,Fire,40.1,-75.3,2016-01-23T16:12:00Z\n")
    (row,) = read_source(path)
    assert row.call == {
        "type": "call", "v": 1, "id": "watchfloor-2", "received_at": "2016-01-23T16:10:00Z", "category": "FIRE", "call_type": None,
        "priority": None, "lat": 40.1, "lng": -75.3, "agency": None, "source": "watchfloor",
    }  # fmt: skip
    assert [(u["status"], u["unit"]) for u in row.updates] == [("dispatched", None)]


def test_watchfloor_without_a_required_column_names_it(tmp_path):
    """Asked for as watchfloor, a header without lat, or without both category and call_type, raises naming what it lacks."""
    with pytest.raises(UnknownFormat, match="lacks the columns lat that format 'watchfloor' needs"):
        list(parse_lines(lines("received_at,category,lng"), "watchfloor"))
    with pytest.raises(UnknownFormat, match="lacks the columns call_type or category"):
        list(parse_lines(lines("received_at,lat,lng"), "watchfloor"))


# --------------------------------------------------------------------------- replay and history


def _seattle_2022(tmp_path: Path) -> Path:
    path = tmp_path / "seattle-2022.csv"
    rows = [f"{i} Main St,Aid Response,01/21/2022 01:{i:02d}:00 PM,47.6,-122.3,,F22{i:04d}" for i in range(12)]
    path.write_bytes(b"\n".join(lines(SEATTLE_HEADER, *rows)) + b"\n")
    return path


def _no_zone_mapping(tmp_path: Path) -> Path:
    text = (Path(__file__).parents[3] / "streams/ingest/mappings/seattle-fire.toml").read_text()
    path = tmp_path / "seattle-nozone.toml"
    path.write_text(text.replace('timezone = "America/Los_Angeles"\n', "").replace('name = "seattle-fire"', 'name = "seattle-nozone"'))
    return path


def test_replay_says_on_its_last_line_why_nothing_was_read(tmp_path, capsys):
    """Every row refused: the last line counts them by reason with an example detail, and says to pass --timezone; it does not
    blame --since/--until, which were not given."""
    assert replay_main([str(_seattle_2022(tmp_path)), "--mapping", str(_no_zone_mapping(tmp_path)), "--dry-run", "--no-progress"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(
        "replay: none of the 12 rows was read: 12 impossible_timestamp (line 2: column 'Datetime' is '01/21/2022 01:00:00 PM'"
    )
    assert "pass --timezone ZONE" in last and "--since" not in last


def test_replay_with_timezone_reads_what_the_mapping_alone_cannot(tmp_path, capsys):
    """The same file and mapping with --timezone America/Los_Angeles: 12 calls would be replayed, at Seattle time."""
    path, mapping = _seattle_2022(tmp_path), _no_zone_mapping(tmp_path)
    assert replay_main([str(path), "--mapping", str(mapping), "--timezone", "America/Los_Angeles", "--dry-run", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "12 calls and 0 incident updates would be replayed" in out and "2022-01-21T21:00:00Z .. 2022-01-21T21:11:00Z" in out


def test_replay_blames_since_until_only_when_they_emptied_the_file(tmp_path, capsys):
    """Calls read but none in the window: the last line names the window and the file's span."""
    assert replay_main([str(_seattle_2022(tmp_path)), "--since", "2023-01-01", "--dry-run", "--no-progress"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (
        "replay: none of the 12 calls read was received in --since/--until [2023-01-01T00:00:00Z, ...); "
        "the file's calls run 2022-01-21T21:00:00Z .. 2022-01-21T21:11:00Z"
    )


def test_replay_plan_sends_refused_updates_to_the_dead_letter_list_and_keeps_their_calls():
    """read_plan of the SF fixture: 3 calls, their updates, the rejected row and the refused update (its update JSON) to refuse."""
    plan = read_plan(SF_UNITS, parse_mapping(SF_MAPPING), "t")
    assert Counter(o.topic for o in plan.records) == {"t.calls": 3, "t.incident-updates": 10}
    assert [(r.line, r.reason) for r in plan.rejected] == [(7, "impossible_timestamp"), (4, "status_before_received")]
    assert json.loads(plan.rejected[1].raw)["unit"] == "T10"
    assert plan.unmapped == Counter({("priority", "I"): 1})


def test_read_history_takes_a_mapping_and_a_timezone(tmp_path):
    """read_history reads a file with a given mapping and zone: the SF fixture's two calls with a location."""
    calls, skipped = read_history(SF_UNITS, progress=False, fmt=parse_mapping(SF_MAPPING), timezone="America/New_York")
    assert [c[1:4] for c in calls] == [(37.754722, -122.418512, "EMS"), (37.76974, -122.422079, "FIRE")]
    assert calls[0][0] == 1678773490.0  # 2023-03-14 01:58:10 in New York (05:58:10Z), not in Los Angeles
    assert calls[0][4] == 55.0  # dispatched 55 s after received
    assert skipped == Counter({"impossible_timestamp": 1, "no_coordinates": 1})
