"""PNG charts of the benchmark figures (matplotlib, no display needed)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

AGENT = "#1f77b4"
CEILING = "#aaaaaa"
DIRECT = "#2ca02c"
FULL = "#d62728"


def draw(data: dict, out: Path) -> dict[str, str]:
    """Every chart the data allows; returns chart name -> file name (inside ``out``)."""
    drawn: dict[str, str] = {}
    for name, painter in (("throughput", _throughput), ("channels", _channels),
                          ("sizes", _sizes), ("instances", _instances),
                          ("latency", _latency)):
        figure = painter(data)
        if figure is None:
            continue
        file_name = f"bench-{name}.png"
        figure.savefig(out / file_name, dpi=100, bbox_inches="tight")
        plt.close(figure)
        drawn[name] = file_name
    return drawn


def _figure(title: str) -> tuple[plt.Figure, plt.Axes]:
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.set_title(title)
    axes.grid(axis="y", alpha=0.3)
    return figure, axes


def _throughput(data: dict) -> plt.Figure | None:
    section = data.get("throughput")
    if not section:
        return None
    figure, axes = _figure("Publishes per second into one nginx worker")
    labels = ["wrk (C, 32 connections)", "push-agent (stream → nginx)"]
    values = [section["wrk"]["rate"], section["agent"]["messages_per_second"]]
    bars = axes.bar(labels, values, color=[CEILING, AGENT])
    axes.bar_label(bars, labels=[f"{v:,.0f}/s" for v in values])
    axes.set_ylabel("messages per second")
    return figure


def _bar_chart(title: str, labels: list[str], values: list[float], xlabel: str,
               ylabel: str) -> plt.Figure:
    figure, axes = _figure(title)
    bars = axes.bar(labels, values, color=AGENT)
    axes.bar_label(bars, labels=[f"{v:,.0f}" for v in values])
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    return figure


def _channels(data: dict) -> plt.Figure | None:
    points = data.get("curves", {}).get("channels")
    if not points:
        return None
    return _bar_chart("Agent throughput against channels per message",
                      [str(p["workload"]["channels_per_message"]) for p in points],
                      [p["deliveries_per_second"] for p in points],
                      "channels per message", "deliveries (envelopes into nginx) per second")


def _sizes(data: dict) -> plt.Figure | None:
    points = data.get("curves", {}).get("sizes")
    if not points:
        return None
    figure, axes = _figure("Agent throughput against message size, beside wrk")
    labels = [_bytes(p["workload"]["content_bytes"]) for p in points]
    positions = range(len(points))
    agent = [p["messages_per_second"] for p in points]
    ceiling = [p.get("wrk", {}).get("rate", 0) for p in points]
    axes.bar([x - 0.2 for x in positions], ceiling, 0.4, color=CEILING, label="wrk, same size")
    bars = axes.bar([x + 0.2 for x in positions], agent, 0.4, color=AGENT, label="push-agent")
    axes.bar_label(bars, labels=[f"{v:,.0f}" for v in agent])
    axes.set_xticks(list(positions), labels)
    axes.set_xlabel("message content size")
    axes.set_ylabel("messages per second")
    axes.legend()
    return figure


def _instances(data: dict) -> plt.Figure | None:
    points = data.get("curves", {}).get("instances")
    if not points:
        return None
    return _bar_chart("Throughput of N instances sharing one Redis (all agents together)",
                      [str(p["instances"]) for p in points],
                      [p["messages_per_second"] for p in points],
                      "instances (each: one agent, one nginx)",
                      "messages per second, all instances")


def _latency(data: dict) -> plt.Figure | None:
    points = data.get("latency", {}).get("points")
    if not points:
        return None
    figure, axes = _figure("Latency to the last subscriber of each message")
    counts = [p["subscribers"] for p in points]
    for path, color, name in (("direct", DIRECT, "straight to nginx"),
                              ("full", FULL, "push-api → Redis → agent → nginx")):
        axes.plot(counts, [p[path]["last"]["p50"] for p in points], "o-", color=color,
                  label=f"{name}, p50")
        axes.plot(counts, [p[path]["last"]["p99"] for p in points], "s--", color=color,
                  label=f"{name}, p99")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xticks(counts, [str(c) for c in counts])
    axes.set_xlabel("EventSource subscribers")
    axes.set_ylabel("milliseconds (log scale)")
    axes.legend(fontsize="small")
    return figure


def _bytes(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"
