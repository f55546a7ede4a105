"""`aitm generate-data`: synthetic Taobao impressions as CSV (datagen/taobao.py)."""

import sys

from cli.common_flags import positive_int
from datagen import taobao
from pipeline import configs

LOADS_TENSORFLOW = False  # numpy alone writes the data


def add_parser(subparsers):
  """Adds `generate-data` and its flags to `subparsers`; returns its parser."""
  parser = subparsers.add_parser("generate-data", help="write synthetic Taobao impressions "
                                 "as CSV")
  parser.add_argument("--out", required=True, help="directory to write data.csv into")
  parser.add_argument("--rows", type=int, default=configs.DEFAULT_ROWS,
                      help="impressions to write (per span with --spans; default %(default)s)")
  parser.add_argument("--seed", type=int, default=configs.DEFAULT_SEED,
                      help="seeds the world and its draws (default %(default)s)")
  parser.add_argument("--truth", help="also write the true p_click,p_buy per row to this file")
  parser.add_argument("--with-cart", action="store_true",
                      help="add the funnel step `cart` between click and purchase")
  parser.add_argument("--spans", type=positive_int,
                      help="write OUT/span-1 .. span-K (--rows each), one world's consecutive "
                      "days")
  parser.add_argument("--shift", metavar="FEATURE=FACTOR",
                      help="with --spans: multiply a numeric feature (price) from "
                      "--shift-from-span on, clipped to its range")
  parser.add_argument("--shift-from-span", type=positive_int, default=taobao.SHIFT_FROM_SPAN,
                      help="the first span --shift changes (default %(default)s)")
  parser.add_argument("--repeat-share", type=float, default=taobao.Repeats().share,
                      help="share of each user's impressions that go to a few ads of the "
                      "user's own, shown again and again (default %(default)s; 0: no repeated "
                      "user-ad pairs beyond chance)")
  return parser


def run(args):
  """Writes the synthetic data: one CSV file, or `--spans` span directories."""
  try:
    repeats = taobao.Repeats(share=args.repeat_share)
  except ValueError as e:
    sys.exit(f"error: --repeat-share: {e}")
  if args.spans:
    _write_spans(args, repeats)
    return
  if args.shift:
    sys.exit("error: --shift needs --spans")
  path = taobao.write_csv(args.out, args.rows, args.seed, truth_path=args.truth,
                          with_cart=args.with_cart, repeats=repeats)
  print(f"wrote {args.rows:,} rows to {path}")


def _write_spans(args, repeats):
  if args.truth:
    sys.exit("error: --truth is written for a single file, not with --spans")
  try:
    shift = taobao.parse_shift(args.shift) if args.shift else None
  except ValueError as e:
    sys.exit(f"error: --shift {e}")
  try:
    taobao.write_spans(args.out, args.rows, args.spans, args.seed, shift=shift,
                       shift_from=args.shift_from_span, with_cart=args.with_cart,
                       repeats=repeats)
  except ValueError as e:
    sys.exit(f"error: {e}")
  print(f"wrote {args.spans} spans of {args.rows:,} rows to {args.out}/span-1 .. "
        f"span-{args.spans}" + (f"; {shift[0]} x {shift[1]:g} from span "
                                f"{args.shift_from_span} on" if shift else ""))
