"""Convert a public repository's candle file to candlecast's candle CSV (see ../README.md).

Usage: python data/external/convert.py FORMAT SOURCE SYMBOL [--since ISO] [--until ISO] > OUT.csv

FORMAT is ``yahoo`` (``Date,Open,High,Low,Close,Adj Close,Volume``, a trading date per row),
``pandas`` (an unnamed index of ``YYYY-MM-DD HH:MM:SS``, then ``Open,High,Low,Close,Volume``) or
``cryptodatadownload`` (a note line, then ``date,symbol,open,high,low,close,volume_btc,volume`` with
dates like ``2019-10-17 09-AM``; the base-currency volume is kept). Price and volume fields are
copied as text, unchanged; rows holding ``null`` are left out and counted on stderr; ``--since``
and ``--until`` (inclusive, ``YYYY-MM-DDTHH:MM:SSZ``) cut the range.
"""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import UTC, datetime
from pathlib import Path

COLUMNS = ("ts", "symbol", "open", "high", "low", "close", "volume")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def rows_of(form: str, source: Path) -> list[tuple[str, list[str]]]:
    """(ts, [open, high, low, close, volume]) of each source row, in source order."""
    with source.open(newline="") as handle:
        lines = list(csv.reader(handle))
    if form == "yahoo":
        return [
            (_iso(datetime.strptime(r[0], "%Y-%m-%d").replace(tzinfo=UTC)), [r[1], r[2], r[3], r[4], r[6]])
            for r in lines[1:]
        ]
    if form == "pandas":
        return [
            (_iso(datetime.strptime(r[0], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)), r[1:6])
            for r in lines[1:]
            if len(r[0]) == 19
        ]
    if form == "cryptodatadownload":
        return [
            (_iso(datetime.strptime(r[0], "%Y-%m-%d %I-%p").replace(tzinfo=UTC)), [r[2], r[3], r[4], r[5], r[6]])
            for r in lines[2:]
        ]
    raise SystemExit(f"unknown format {form!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("form", choices=["yahoo", "pandas", "cryptodatadownload"])
    parser.add_argument("source", type=Path)
    parser.add_argument("symbol")
    parser.add_argument("--since", default="")
    parser.add_argument("--until", default="9999")
    args = parser.parse_args()
    rows = [(ts, v) for ts, v in rows_of(args.form, args.source) if args.since <= ts <= args.until]
    kept = [(ts, v) for ts, v in rows if "null" not in v]
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([ts, args.symbol, *v] for ts, v in sorted(kept))
    sys.stderr.write(f"{args.source.name}: {len(kept)} rows written, {len(rows) - len(kept)} with null left out\n")


if __name__ == "__main__":
    main()
