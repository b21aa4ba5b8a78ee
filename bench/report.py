"""How a benchmark ends: its report as one JSON line on stdout, or a user error (a missing data set,
a bad flag value) as one line on stderr and exit status 2."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from luoxia.errors import LuoxiaError


def print_report(main: Callable[[], dict[str, Any]]) -> None:
    try:
        report = main()
    except LuoxiaError as error:
        print(f"bench/{Path(sys.argv[0]).name}: {error}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(report, ensure_ascii=False), flush=True)
