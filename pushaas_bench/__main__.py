"""``python -m pushaas_bench``: run the benchmarks and write the report, JSON and charts.

    python -m pushaas_bench                       every benchmark, full size (make bench)
    python -m pushaas_bench --quick --out DIR     tiny sizes, a few seconds per section
    python -m pushaas_bench --render              redraw the report from the JSON only
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pushaas_bench import charts, report, runner
from pushaas_bench.procs import REPO_ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test)")
    parser.add_argument("--out", default=str(REPO_ROOT / "docs"),
                        help="where benchmarks.md, benchmarks.json and the charts go")
    parser.add_argument("--sections", default=",".join(runner.SECTIONS),
                        help=f"comma-separated subset of {','.join(runner.SECTIONS)}")
    parser.add_argument("--render", action="store_true",
                        help="only redraw the report and charts from benchmarks.json")
    parser.add_argument("--keep", action="store_true", help="keep the run dir (logs)")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_file = out / "benchmarks.json"
    if args.render:
        data = json.loads(data_file.read_text())
    else:
        data = _run(args)
        data_file.write_text(json.dumps(data, indent=1) + "\n")

    pictures = charts.draw(data, out)
    (out / "benchmarks.md").write_text(report.render(data, pictures))
    print(f"wrote {out / 'benchmarks.md'}, {data_file.name} and {len(pictures)} charts")
    return 0


def _run(args: argparse.Namespace) -> dict:
    sizes = runner.QUICK if args.quick else runner.FULL
    sections = tuple(name for name in args.sections.split(",") if name)
    unknown = set(sections) - set(runner.SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections: {sorted(unknown)}")

    run_dir = Path(tempfile.mkdtemp(prefix="pushaas-bench-"))
    started = time.monotonic()

    def progress(text: str) -> None:
        print(f"[bench {time.monotonic() - started:6.1f}s] {text}", flush=True)

    try:
        data = runner.run(sizes, run_dir, sections, progress)
    finally:
        if args.keep:
            print(f"run dir kept: {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    data["command"] = "make bench" if not args.quick else "python -m pushaas_bench --quick"
    data["quick"] = args.quick
    return data


if __name__ == "__main__":
    sys.exit(main())
