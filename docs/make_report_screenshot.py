"""Re-make ``docs/report-screenshot.png``, the README's picture of the demo report.

Runs ``tasder demo`` (the built-in digits flow, shipped weights, so the numbers are the README's)
into a temporary folder and photographs the top of its ``report.html`` with headless Chromium::

    python3 docs/make_report_screenshot.py [--chromium PATH] [--width 880] [--height 1936]

Why a script: the screenshot is a figure the README shows, so it must come from a named command
and be re-made whenever the demo's numbers move (a stale picture contradicts the tables beside it).
The PNG is written to a temporary file next to the target and renamed over it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"),
                        help="the Chromium executable (default: chromium on PATH)")
    parser.add_argument("--width", type=int, default=880)
    parser.add_argument("--height", type=int, default=1936)
    parser.add_argument("-o", "--output", type=Path, default=HERE / "report-screenshot.png")
    args = parser.parse_args()
    if not args.chromium:
        raise SystemExit("error: no chromium on PATH (pass --chromium PATH)")
    if args.width < 320 or args.height < 320:
        raise SystemExit(f"error: --width/--height must be at least 320 pixels; got {args.width}x{args.height}")
    with tempfile.TemporaryDirectory(prefix="tasder-shot-") as tmp:
        report = Path(tmp) / "report"
        subprocess.run([sys.executable, "-m", "tasder", "demo", "-o", str(report)], check=True)
        shot = Path(tmp) / "shot.png"
        # No network here: without the background-networking flags Chromium keeps retrying blocked hosts.
        subprocess.run([args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--no-first-run", "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", f"--user-data-dir={Path(tmp) / 'profile'}", f"--screenshot={shot}",
                        f"--window-size={args.width},{args.height}", (report / "report.html").as_uri()],
                       check=True, capture_output=True, timeout=300)
        data = shot.read_bytes()
        if not data.startswith(PNG_MAGIC):
            raise SystemExit("error: Chromium wrote no PNG")
        staged = args.output.with_name(f".{args.output.name}.tmp-{os.getpid()}")
        staged.write_bytes(data)
        os.replace(staged, args.output)
    print(f"wrote {args.output} ({len(data):,} bytes)")


if __name__ == "__main__":
    main()
