"""Rewrite evaluation reports (summary, report.md, report.png) from the clips their report.json holds.

After a change to how `dragnuwa evaluate` summarises (e.g. the bootstrap intervals), the reports
already written, such as docs/eval/, are brought up to date without generating anything again:

    python scripts/rescore_eval.py docs/eval docs/eval/model_alone
"""

import argparse
import sys

from dragnuwa.errors import UserError
from dragnuwa.evaluate import rescore_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="report folders written by `dragnuwa evaluate`")
    args = parser.parse_args()
    try:
        for folder in args.folders:
            print(rescore_report(folder))
    except UserError as err:  # one line and exit code 2, as the dragnuwa commands do
        print(f"rescore_eval: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
