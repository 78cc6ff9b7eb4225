"""``esl bench``'s report: the table and its caption for people, the JSON for machines, the chart.

Split from :mod:`esl.cli.bench` (which measures); every function takes the measured
:class:`~esl.cli.bench.Result` list.
"""

from __future__ import annotations

import datetime
import os
import platform
from typing import Any

from esl.cli import capture as captures
from esl.cli._common import CLIError
from esl.cli.bench import MEASURES, PEERS, SHORT, Result

__all__ = ["caption", "chart", "load_average", "machine", "plot", "ratios", "report", "table"]


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the system has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - not on this platform
        return None


def ratios(results: list[Result]) -> dict[tuple[str, str], dict[str, float]]:
    """For each esl figure: its ratio to the other backend and to each peer on the same job.

    Peers have one parser figure (they always decode everything); it is the reference for
    ``parse``, ``decode`` and ``route``.
    """
    by: dict[tuple[str, str], Result] = {(r.measure, r.subject): r for r in results}
    out: dict[tuple[str, str], dict[str, float]] = {}
    for r in results:
        if not r.subject.startswith("esl-"):
            continue
        row: dict[str, float] = {}
        other = "esl-python" if r.subject == "esl-cython" else "esl-cython"
        if (r.measure, other) in by and by[(r.measure, other)].rate:
            row[other] = r.rate / by[(r.measure, other)].rate
        if r.measure == "e2e3" and ("e2e", r.subject) in by and by[("e2e", r.subject)].rate:
            row["keys-only"] = r.rate / by[("e2e", r.subject)].rate
        for peer in PEERS:
            # peers decode every header whatever their handler reads: their one e2e figure is the reference
            ref = by.get(("e2e" if r.measure.startswith("e2e") else "decode", peer))
            if ref is not None and ref.rate:
                row[peer] = r.rate / ref.rate
        out[(r.measure, r.subject)] = row
    return out


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": f"{platform.system()} {platform.release()}",
        "load_average": load_average(),
    }


def report(cap: captures.Capture, results: list[Result], backend_default: str, *,
           measured_bytes: int | None = None, total: tuple[int, int] | None = None,
           load_before: list[float] | None = None) -> dict[str, Any]:
    """The machine-readable form of a run (``--json``).

    ``capture.events`` and ``capture.bytes`` are what was measured (the first N events with
    ``--events N``); ``total`` is the whole capture's (events, event bytes).
    """
    rat = ratios(results)
    rows = []
    for r in results:
        d = r.as_dict()
        d["vs"] = {k: round(v, 2) for k, v in rat.get((r.measure, r.subject), {}).items()}
        rows.append(d)
    from esl import __version__

    mach = machine()
    mach["load_average_before"] = load_before
    capture: dict[str, Any] = {
        "path": cap.path,
        "events": cap.events,
        "format": cap.format,
        "bytes": len(cap.event_bytes()) if measured_bytes is None else measured_bytes,
    }
    if total is not None:
        capture["total_events"], capture["total_bytes"] = total
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "esl": __version__,
        "default_backend": backend_default,
        "machine": mach,
        "capture": capture,
        "measures": MEASURES,
        "results": rows,
    }


def _fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def caption(results: list[Result], mach: dict[str, Any] | None = None) -> str:
    """What the table's figures are, for the peers actually measured, and where they were measured."""
    m = mach or machine()
    load = m.get("load_average")
    where = f"{m['cpu']}, {m['cores']} cores, Python {m['python']}" + (f", load {load[0]:.2f}" if load else "")
    measures = {r.measure for r in results}
    parts = []
    if "parse" in measures:
        parts.append("parse + keys: framing and routing keys")
    if "decode" in measures:
        parts.append("full decode: every header and body")
    if "route" in measures:
        parts.append("routed away: Router with 10,000 routes, 1% of events matching")
    if "e2e" in measures:
        parts.append("end to end: replay server -> client with one '*' handler reading Unique-ID, over loopback")
    if "e2e3" in measures:
        parts.append("end to end, 3 headers: the handler reads Unique-ID, Channel-State and Caller-Caller-ID-Number "
                     "(its 'vs other core' cell: over the same core's Unique-ID-only figure)")
    text = f"{where}. " + "; ".join(parts) + "."
    peers = [p for p in PEERS if any(r.subject == p for r in results)]
    cores = {r.subject for r in results if r.subject.startswith("esl-")}
    if peers:
        text += (" Ratios: this row's events/s over the other's; the peers' parsers always decode everything, "
                 "so their one figure is the reference for the three in-process rows.")
    elif len(cores) > 1 or "e2e3" in measures:
        text += " Ratio: this row's events/s over the other core's on the same job."
    return text


def table(cap: captures.Capture, results: list[Result], mach: dict[str, Any] | None = None) -> Any:
    """The rich table printed for people; subject names and figures never wrap, even at 80 columns."""
    from rich import box
    from rich.table import Table

    rat = ratios(results)
    subjects_peers = [p for p in PEERS if any(r.subject == p for r in results)]
    cores = {r.subject for r in results if r.subject.startswith("esl-")}
    t = Table(
        title=f"esl bench: {cap.path} ({cap.events:,} {cap.format} events)",
        caption=caption(results, mach),
        box=box.SIMPLE_HEAD,
        padding=(0, 0),
        pad_edge=False,
        show_edge=False,
    )
    headers = ["measure", "subject", "events/s", "MB/s"]
    other_column = len(cores) > 1 or any("keys-only" in row for row in rat.values())
    if other_column:
        headers.append("vs other\ncore")
    headers += [f"vs\n{p}" for p in subjects_peers]
    rows: list[list[str]] = []
    last = None
    for r in sorted(results, key=lambda r: (list(MEASURES).index(r.measure), r.subject)):
        row = rat.get((r.measure, r.subject), {})
        other = [v for k, v in row.items() if k.startswith("esl-") or k == "keys-only"]
        cells = [
            SHORT[r.measure] if r.measure != last else "",
            r.subject,
            _fmt_rate(r.rate),
            f"{r.bytes / r.seconds / 1e6:,.1f}" if r.seconds else "",
        ]
        if other_column:
            cells.append(f"{other[0]:.2f}x" if other else "")
        cells += [f"{row[p]:.1f}x" if p in row else "" for p in subjects_peers]
        rows.append(cells)
        last = r.measure
    for i, header in enumerate(headers):
        # subjects and figures never wrap or get cut; a measure's name may wrap between its words
        if i == 0:
            width = max(len(word) for row in rows for word in row[0].split() or [""]) + 1
            t.add_column(header, justify="left", no_wrap=False, min_width=max(width, len(header) + 1),
                         ratio=1)
            continue
        width = max([len(row[i]) for row in rows] + [len(line) for line in header.splitlines()])
        t.add_column(header, justify="left" if i < 2 else "right", no_wrap=True, min_width=width + 1)
    for cells in rows:
        t.add_row(*cells)
    return t


def _compact(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e4:
        return f"{x / 1e3:.0f}k"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def chart(results: list[Result], title: str, mach: dict[str, Any] | None = None, date: str | None = None) -> Any:
    """A matplotlib figure: a bar chart of events/s per measure and subject (matplotlib imported lazily).

    Log scale with every bar starting at 1 event/s, so bar heights compare as orders of
    magnitude from a fixed origin; each measure has slots only for the subjects measured on
    it, and a footnote says why the peers have none under parse and routed away. The
    machine, load and date are written under the chart.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CLIError("--plot needs matplotlib: pip install matplotlib (or pip install 'esl[bench]')") from None
    measures = [m for m in MEASURES if any(r.measure == m for r in results)]
    subjects = sorted({r.subject for r in results})
    colors = {s: f"C{i}" for i, s in enumerate(subjects)}
    fig, ax = plt.subplots(figsize=(max(7, 2.4 * len(measures)), 5.2))
    slot = 0.8 / max(1, max(sum(1 for r in results if r.measure == m) for m in measures))
    labelled: set[str] = set()
    for j, m in enumerate(measures):
        here = sorted((r for r in results if r.measure == m), key=lambda r: subjects.index(r.subject))
        for i, r in enumerate(here):
            x = j + (i - (len(here) - 1) / 2) * slot
            bar = ax.bar([x], [r.rate], slot, bottom=0, color=colors[r.subject],
                         label=r.subject if r.subject not in labelled else None)
            labelled.add(r.subject)
            ax.bar_label(bar, labels=[_compact(r.rate)], fontsize=7, padding=2)
    ax.set_xticks(range(len(measures)), [SHORT[m] for m in measures], fontsize=9)
    ax.set_yscale("log")
    rates = [r.rate for r in results if r.rate > 0]
    top = max(rates) if rates else 10.0
    ax.set_ylim(1, top * 8)  # bars start at 1 event/s; room above for labels and the legend
    ax.set_ylabel("events per second (log scale, bars from 1)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, ncols=min(4, len(subjects)), loc="upper center")
    notes = []
    peers = [p for p in PEERS if p in subjects]
    if peers and any(m in measures for m in ("parse", "route")):
        notes.append(f"{' and '.join(peers)} decode every header: one parser figure, shown under full decode; "
                     "they have no parse + keys or routed away figure.")
    info = mach or machine()
    load = info.get("load_average")
    notes.append(f"{info['cpu']}, {info['cores']} cores, {info['system']}, {info['implementation']} {info['python']}"
                 + (f", load {load[0]:.2f}" if load else "")
                 + f"; {date or datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    fig.text(0.01, 0.01, "\n".join(notes), fontsize=7, ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.04 * len(notes) + 0.02, 1, 1))
    return fig


def plot(results: list[Result], path: str, title: str, mach: dict[str, Any] | None = None,
         date: str | None = None) -> None:
    """Draw :func:`chart` into ``path`` (PNG, SVG, PDF: by its extension)."""
    import matplotlib.pyplot as plt

    fig = chart(results, title, mach, date)
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise CLIError(f"cannot write {path!r}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
