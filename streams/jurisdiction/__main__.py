"""Command line: build a profile's GeoJSON, or check a profile.

::

    python -m streams.jurisdiction areas-from-column calls.csv --name-column twp --lat lat --lng lng \\
        --title-case --exclude "Phila County" > areas.geojson
    python -m streams.jurisdiction boundary-from-areas areas.geojson > boundary.geojson
    python -m streams.jurisdiction check infra/jurisdictions/montgomery-pa/jurisdiction.toml

``areas-from-column`` reads the CSV as a stream (the csv module) and keeps only
the name and coordinate columns of each row: no address or other column
reaches the output. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from tqdm import tqdm

from streams.jurisdiction.areas import DEFAULT_RESOLUTION
from streams.jurisdiction.build import areas_from_column, boundary_from_areas
from streams.jurisdiction.profile import ProfileError, load_profile


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m streams.jurisdiction", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    col = sub.add_parser("areas-from-column", help="named areas (GeoJSON on stdout) from a CSV's place-name column")
    col.add_argument("file", type=Path, help="CSV with a header row")
    col.add_argument("--name-column", required=True, metavar="COL", help="column holding the area's name (e.g. twp)")
    col.add_argument("--lat", required=True, metavar="COL", help="latitude column")
    col.add_argument("--lng", required=True, metavar="COL", help="longitude column")
    col.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION, metavar="R", help="H3 resolution (default 8)")
    col.add_argument("--min-calls", type=int, default=3, metavar="N", help="leave out cells with fewer calls (default 3)")
    col.add_argument("--title-case", action="store_true", help="'LOWER MERION' -> 'Lower Merion'")
    col.add_argument("--exclude", action="append", default=[], metavar="NAME", help="a name not to map (after --title-case); repeatable")
    col.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    bnd = sub.add_parser("boundary-from-areas", help="the union of the areas' cells, holes filled (GeoJSON on stdout)")
    bnd.add_argument("file", type=Path, help="areas GeoJSON FeatureCollection (with a 'name' property)")
    bnd.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION, metavar="R", help="H3 resolution (default 8)")
    chk = sub.add_parser("check", help="load a profile and print what it holds")
    chk.add_argument("file", type=Path, help="jurisdiction.toml")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "areas-from-column":
            return _areas(args)
        if args.command == "boundary-from-areas":
            data = json.loads(args.file.read_text(encoding="utf-8"))
            json.dump(boundary_from_areas(data, args.resolution), sys.stdout, separators=(",", ":"))
            sys.stdout.write("\n")
            return 0
        return _check(args.file)
    except (OSError, ValueError) as exc:  # ProfileError, a bad file or argument: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _areas(args: argparse.Namespace) -> int:
    with args.file.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in (args.name_column, args.lat, args.lng) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{args.file}: no column {', '.join(map(repr, missing))}; its header is {reader.fieldnames}")
        rows = tqdm(reader, desc=f"reading {args.file.name}", unit=" rows", file=sys.stderr, disable=args.no_progress)
        collection = areas_from_column(
            rows,
            args.name_column,
            args.lat,
            args.lng,
            resolution=args.resolution,
            min_calls=args.min_calls,
            title_case=args.title_case,
            exclude=args.exclude,
        )
    json.dump(collection, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
    features = collection["features"]
    cells = sum(f["properties"]["cells"] for f in features)
    print(f"{len(features)} areas, {cells} cells at resolution {args.resolution}", file=sys.stderr)
    return 0


def _check(path: Path) -> int:
    try:
        p = load_profile(path)
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{p.id}: {p.name}, time zone {p.timezone}")
    print(f"  boundary: {'GeoJSON ' + p.boundary['type'] if p.boundary else 'none'}; box {p.box}")
    print(f"  areas: {len(p.areas)} named ({', '.join(p.areas.names()[:5])}{', ...' if len(p.areas) > 5 else ''})")
    print(f"  special days: {len(p.special_days)}; zones: {p.zones_dir}; basemap: {p.basemap}")
    print(f"  false alerts a day: {p.false_alerts_per_day:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
