"""Records of the backup benchmark's measurements, the targets' ratios and the printed report."""

from __future__ import annotations

from dataclasses import dataclass, field

from _common import Measurement

STEPS = ("first backup", "no-change backup", "backup after mutate", "full restore")
MIB = 1024 * 1024


@dataclass
class StepRecord:
    """All repetitions of one step of one tool."""

    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    peak_rss: list[int] = field(default_factory=list)
    error: str | None = None

    def add(self, measurement: Measurement) -> None:
        self.seconds.append(measurement.seconds)
        self.cpu_seconds.append(measurement.cpu_seconds)
        self.peak_rss.append(measurement.peak_rss)

    @property
    def best(self) -> float | None:
        return min(self.seconds) if self.seconds and self.error is None else None

    @property
    def best_cpu(self) -> float:
        """CPU seconds of the repetition with the best time."""
        return self.cpu_seconds[self.seconds.index(min(self.seconds))]


@dataclass
class ToolRecord:
    """Everything measured for one tool, or why it was not."""

    name: str
    version: str = "unknown"
    reason: str | None = None  # set when the tool is not available
    steps: dict[str, StepRecord] = field(default_factory=lambda: {s: StepRecord() for s in STEPS})
    stored_after_mutate: list[int] = field(default_factory=list)
    stored_source: str = ""
    stored_by_first: list[int] = field(default_factory=list)
    growth_after_mutate: list[int] = field(default_factory=list)

    @property
    def peak_rss(self) -> int | None:
        values = [max(step.peak_rss) for step in self.steps.values() if step.peak_rss]
        if self.reason or not values or any(step.error for step in self.steps.values()):
            return None
        return max(values)


def better_peer(records: dict[str, ToolRecord], value: object) -> tuple[str, float] | None:
    """Return the peer with the smallest value of `value(record)`, and that value."""
    found = [
        (name, value(record))  # type: ignore[operator]
        for name, record in records.items()
        if name != "raidd" and record.reason is None and value(record) is not None  # type: ignore[operator]
    ]
    return min(found, key=lambda item: item[1]) if found else None


def targets(records: dict[str, ToolRecord], dataset_bytes: int) -> list[dict[str, object]]:
    """Compute each target's ratio of raidd against the better peer."""

    def best(step: str) -> object:
        return lambda record: record.steps[step].best

    def stored(record: ToolRecord) -> int | None:
        return min(record.stored_after_mutate) if record.stored_after_mutate else None

    def rss(record: ToolRecord) -> int | None:
        return record.peak_rss

    rows = []
    specs = [
        ("first backup throughput", best("first backup"), "speed", 1.5),
        ("full restore throughput", best("full restore"), "speed", 1.5),
        ("no-change backup speed", best("no-change backup"), "speed", 1.0),
        ("bytes stored after mutate", stored, "size", 1.1),
        ("peak RSS", rss, "size", 1.0),
    ]
    raidd = records["raidd"]
    for label, value, kind, required in specs:
        peer = better_peer(records, value)
        own = value(raidd) if raidd.reason is None else None  # type: ignore[operator]
        row: dict[str, object] = {"target": label, "required": required, "kind": kind}
        row["peer"] = peer[0] if peer else None
        row["peer_value"] = peer[1] if peer else None
        row["raidd_value"] = own
        if peer and own:
            # Speed: peer time / raidd time (throughput ratio); size: raidd / peer.
            ratio = peer[1] / own if kind == "speed" else own / peer[1]
            row["ratio"] = ratio
            row["met"] = ratio >= required if kind == "speed" else ratio <= required
        else:
            row["ratio"] = None
            row["met"] = None
        rows.append(row)
    return rows


def format_value(kind: str, label: str, value: object, dataset_bytes: int) -> str:
    if value is None:
        return "n/a"
    if "RSS" in label:
        return f"{value / MIB:.0f} MiB"  # type: ignore[operator]
    if kind == "size":
        return f"{value / 1e6:.2f} MB"  # type: ignore[operator]
    if "no-change" in label:
        return f"{value:.2f} s"
    return f"{value:.2f} s ({dataset_bytes / value / 1e6:.0f} MB/s)"  # type: ignore[operator]


def print_report(report: dict[str, object], records: dict[str, ToolRecord]) -> None:
    """Print the run's conditions, the table of steps and the table of targets."""
    dataset = report["dataset"]
    size = dataset["bytes"]  # type: ignore[index]
    print(f"dataset: {size / 1e6:.1f} MB in {dataset['files']} files")  # type: ignore[index]
    print(f"machine: {report['machine']}")
    print(f"page cache dropped before each step: {report['page_cache_dropped']}")
    print(f"repetitions: {report['repeat']} (best time and its CPU time, largest peak RSS)")
    print()
    print_steps(records, size)
    print()
    print_targets(report["targets"], size)  # type: ignore[arg-type]


def step_cell(record: ToolRecord, step: str, dataset_bytes: int) -> str:
    if record.reason:
        return f"not available: {record.reason}"
    entry = record.steps[step]
    if entry.error:
        return f"failed: {entry.error[:120]}"
    if entry.best is None:
        return "n/a"
    rate = ""
    if step != "no-change backup":
        rate = f" ({dataset_bytes / entry.best / 1e6:.0f} MB/s)"
    return (
        f"{entry.best:.2f} s{rate}, CPU {entry.best_cpu:.2f} s, "
        f"{max(entry.peak_rss) / MIB:.0f} MiB"
    )


def print_steps(records: dict[str, ToolRecord], size: int) -> None:
    names = list(records)
    print("| step | " + " | ".join(names) + " |")
    print("| --- |" + " ---: |" * len(names))
    for step in STEPS:
        cells = [step_cell(records[name], step, size) for name in names]
        print(f"| {step} | " + " | ".join(cells) + " |")

    cells = []
    for name in names:
        record = records[name]
        if record.stored_after_mutate:
            cells.append(f"{min(record.stored_after_mutate) / 1e6:.2f} MB")
        else:
            cells.append("n/a" if record.reason else f"n/a ({record.stored_source})")
    print("| bytes stored after mutate | " + " | ".join(cells) + " |")
    for label, attribute in (
        ("repository growth after mutate", "growth_after_mutate"),
        ("bytes stored by first backup", "stored_by_first"),
    ):
        values = [getattr(records[name], attribute) for name in names]
        cells = [f"{min(value) / 1e6:.2f} MB" if value else "n/a" for value in values]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    for name in names:
        if records[name].stored_source:
            print(f"{name} bytes stored: {records[name].stored_source}")
    if "raidd" in records:
        print("raidd repository growth: allocated blocks of the image files x 3/4 (no parity)")


def print_targets(rows: list[dict[str, object]], size: int) -> None:
    print("| target | raidd | better peer | ratio | required | met |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        own = format_value(str(row["kind"]), str(row["target"]), row["raidd_value"], size)
        peer = format_value(str(row["kind"]), str(row["target"]), row["peer_value"], size)
        ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}"
        relation = ">=" if row["kind"] == "speed" else "<="
        met = {True: "yes", False: "NO", None: "n/a"}[row["met"]]
        print(
            f"| {row['target']} | {own} | {row['peer'] or 'none'} {peer} | {ratio} | "
            f"{relation} {row['required']} | {met} |"
        )


def build_report(
    records: dict[str, ToolRecord], machine: dict[str, object], extra: dict[str, object]
) -> dict[str, object]:
    tools = {}
    for name, record in records.items():
        tools[name] = {
            "version": record.version,
            "available": record.reason is None,
            "reason": record.reason,
            "steps": {
                step: {
                    "seconds": entry.seconds,
                    "cpu_seconds": entry.cpu_seconds,
                    "best_seconds": entry.best,
                    "peak_rss_bytes": entry.peak_rss,
                    "error": entry.error,
                }
                for step, entry in record.steps.items()
            },
            "stored_after_mutate_bytes": record.stored_after_mutate,
            "stored_source": record.stored_source,
            "stored_by_first_bytes": record.stored_by_first,
            "repository_growth_after_mutate_bytes": record.growth_after_mutate,
            "peak_rss_bytes": record.peak_rss,
        }
    return {"machine": machine, **extra, "tools": tools}
