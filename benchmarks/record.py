"""Machine-readable benchmark results in the repo: ``benchmarks/results/<topic>.json``.

Every benchmark writes its headline numbers here by default (``--no-record`` skips it, ``--results-dir`` puts the
file elsewhere, e.g. a test's tmp dir), so the headline table of ``benchmarks/RESULTS.md`` is backed by files,
not copied by hand. One file per topic; a new run of the same topic replaces it (git keeps the old one).

File layout::

    {"topic": ..., "date": "2026-12-05T09:00:00Z", "commit": "0e97638+dirty",
     "machine": {"nproc": 2, "cpu": "...", "gpu": "no GPU", "summary": "2-core <cpu>, no GPU"},
     "command": "python -m benchmarks.x --flag ...", "seeds": [0, 1] | null,
     "values": {"name": {"value": 0.84, "goal": ">= 0.8", "unit": "ratio", "note": "..."}},
     "notes": "..." | null}

Usage in a benchmark::

    from benchmarks.record import add_record_args, record_from_args, val
    add_record_args(parser)
    ...
    record_from_args(args, "reward_service", {"grpc_ratio_b32": val(0.86, goal=">= 0.9", unit="ratio")})
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = RESULTS_DIR.parent.parent


def val(value: Any, goal: Optional[str] = None, unit: Optional[str] = None, note: Optional[str] = None) -> dict:
    """One recorded number: ``{"value": v}`` plus the goal / unit / note that are given."""
    out: Dict[str, Any] = {"value": _plain(value)}
    for key, item in (("goal", goal), ("unit", unit), ("note", note)):
        if item is not None:
            out[key] = item
    return out


def _plain(value: Any) -> Any:
    """numpy scalars / NaN -> JSON-safe Python values (NaN becomes null: a ratio with a zero denominator)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float):
        return None if value != value else round(value, 6)
    return value


def git_commit(root: Path = REPO_ROOT) -> str:
    """Short HEAD commit, ``+dirty`` when the working tree has changes; ``unknown`` outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def _gpu_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # no torch / broken driver: the record still gets written
        pass
    return "no GPU"


def machine_info() -> dict:
    """nproc, CPU model, GPU name (torch.cuda) and a one-line summary for tables."""
    nproc = os.cpu_count() or 0
    cpu, gpu = _cpu_model(), _gpu_name()
    return {"nproc": nproc, "cpu": cpu, "gpu": gpu, "summary": f"{nproc}-core {cpu}, {gpu}"}


def command_line(argv: Optional[Iterable[str]] = None, module: Optional[str] = None) -> str:
    """The command as run: ``python -m <module> ARGS``; module defaults to the ``-m`` module of this process and
    argv to sys.argv[1:] (a benchmark's ``main(argv)`` called from a test passes both)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    module = module or (spec.name if spec is not None and spec.name else None)
    prog = f"python -m {module}" if module else f"python {sys.argv[0]}"
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join([prog, *(shlex.quote(str(a)) for a in args)])


def record_result(topic: str, values: Dict[str, dict], seeds: Optional[Iterable[int]] = None,
                  notes: Optional[str] = None, command: Optional[str] = None,
                  results_dir: Optional[Path] = None) -> Path:
    """Write ``<results_dir>/<topic>.json`` (default ``benchmarks/results``) and return its path.

    ``values`` maps a name to ``val(...)`` dicts (a bare number is wrapped). Raises ValueError on an empty topic
    or no values (a result file without numbers would back nothing), and RuntimeError when a test (pytest) would
    write into the repo's results folder.
    """
    if not topic or any(c in topic for c in "/\\ ") or topic.startswith("."):
        raise ValueError(f"record_result: topic must be a plain file stem (no '/', '\\', spaces); got {topic!r}")
    if not values:
        raise ValueError(f"record_result({topic!r}): no values to record")
    if results_dir is None and os.environ.get("PYTEST_CURRENT_TEST"):
        raise RuntimeError(f"record_result({topic!r}) inside a test would write into the repo's benchmarks/results: "
                           "pass --no-record or --results-dir TMP to the benchmark")
    vals = {name: (v if isinstance(v, dict) and "value" in v else val(v)) for name, v in values.items()}
    vals = {name: dict(v, value=_plain(v["value"])) for name, v in vals.items()}
    record = {
        "topic": topic,
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "commit": git_commit(),
        "machine": machine_info(),
        "command": command or command_line(),
        "seeds": None if seeds is None else [int(s) for s in seeds],
        "values": vals,
        "notes": notes,
    }
    out_dir = Path(results_dir) if results_dir is not None else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{topic}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)
    return path


def add_record_args(parser: argparse.ArgumentParser, topic_help: Optional[str] = None) -> None:
    """``--no-record``, ``--results-dir`` and ``--topic`` for a benchmark's parser."""
    g = parser.add_argument_group("result file (benchmarks/record.py)")
    g.add_argument("--no-record", action="store_true",
                   help="do not write the machine-readable result (benchmarks/results/<topic>.json)")
    g.add_argument("--results-dir", default=None, help="write the result file here instead of benchmarks/results")
    g.add_argument("--topic", default=None, help=topic_help or "result file name (default: the benchmark's own)")


def topic_part(text: str) -> str:
    """A path or name as a piece of a topic: characters outside [A-Za-z0-9_-] become '_'."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(text)).strip("_") or "x"


def record_from_args(args: argparse.Namespace, topic: str, values: Dict[str, dict],
                     seeds: Optional[Iterable[int]] = None, notes: Optional[str] = None,
                     argv: Optional[Iterable[str]] = None) -> Optional[Path]:
    """record_result honouring ``--no-record`` / ``--results-dir`` / ``--topic``; prints where it wrote."""
    if getattr(args, "no_record", False):
        return None
    topic = getattr(args, "topic", None) or topic
    caller = sys._getframe(1).f_globals.get("__spec__")  # the benchmark module, also when a test calls its main()
    module = caller.name if caller is not None and argv is not None else None
    path = record_result(topic, values, seeds=seeds, notes=notes, command=command_line(argv, module),
                         results_dir=getattr(args, "results_dir", None))
    print(f"[record] {path}", flush=True)
    return path
