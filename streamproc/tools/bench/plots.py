"""The benchmark's plots (PNG, matplotlib when installed): latency against offered load, and the
rest :func:`write_plots` lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamproc.plotting import pyplot
from streamproc.tools.bench.results import BenchResults, LatencySummary, Point
from streamproc.tools.bench.targets import TARGET_P99_MS, rate_points

__all__ = ["write_plots"]


def _ms(lat: LatencySummary, q: str) -> float:
    """``lat``'s ``q`` ("p50", "p99"), at least 0.1 ms for a log axis (none recorded: 0.1)."""
    value: float | None = getattr(lat, q)
    return max(0.1, 0.0 if value is None else value)


def write_plots(results: BenchResults, out_dir: Path) -> list[Path]:
    plt = pyplot("the benchmark plots")
    if plt is None:
        return []
    from matplotlib import ticker

    by = rate_points(results)
    paths = []
    styles: dict[str, dict[str, Any]] = {"passthrough": {"color": "0.5", "linestyle": "--"}}
    # Gray is the floor's: every other contender gets a distinct non-gray colour.
    palette = [f"C{i}" for i in range(10) if i != 7]  # the default cycle (tab10) minus its gray
    palette += ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e"]  # Dark2
    others = [name for name in by if name not in styles]
    styles.update({name: {"color": palette[i % len(palette)]} for i, name in enumerate(others)})

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, q in zip(axes, ("p50", "p99"), strict=True):
        for name, pts in by.items():
            rates = sorted(pts)
            ax.plot(
                rates,
                [_ms(pts[r].latency_ms, q) for r in rates],
                marker="o",
                label=name,
                **styles.get(name, {}),
            )
            sat = [r for r in rates if pts[r].saturated]
            ax.scatter(
                sat,
                [_ms(pts[r].latency_ms, q) for r in sat],
                s=140,
                facecolors="none",
                edgecolors="red",
            )
        ax.axhline(TARGET_P99_MS, color="red", linewidth=0.8, linestyle=":", label="100 ms target")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xticks(sorted({r for pts in by.values() for r in pts}))
        ax.tick_params(axis="x", labelrotation=45)
        ax.set_xlabel("offered load, events/s (red ring: saturated)")
        ax.set_title(f"{q} end-to-end latency (received − sent)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms (log)")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"streamproc bench — {results.environment.student_version}", fontsize=10)
    fig.tight_layout()
    paths.append(out_dir / "latency_vs_load.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    top = 1.0
    for name, pts in by.items():
        rates = sorted(pts)
        top = max(top, *rates)
        ax.plot(
            rates,
            [pts[r].throughput_eps for r in rates],
            marker="o",
            label=name,
            **styles.get(name, {}),
        )
    ax.plot([1, top], [1, top], color="0.8", linewidth=0.8, label="delivered = offered")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered load, events/s")
    ax.set_ylabel("delivered, events/s")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "throughput_vs_load.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for p in results.points:
        if not isinstance(p, Point) or p.profile != "burst" or p.burst is None:
            continue
        series = p.lag_series or ()
        ax.plot(
            [t for t, _ in series],
            [max(1, lag) for _, lag in series],
            label=p.contender,
            **styles.get(p.contender, {}),
        )
        ax.axvline(p.burst.at_s, color="0.85", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the load started (burst at the grey line)")
    ax.set_ylabel("lag: sent, not yet predicted (log)")
    ax.set_title("lag during a burst on top of steady load")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "burst_lag.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths
