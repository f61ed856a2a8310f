"""Memory-map figures: a mapping drawn on the time x address plane of fast memory.

The figure follows the memory-map plots of the mallocMuZero paper (Wang et al., 2023):
the x axis is the schedule step, the y axis the fast-memory address, and every fast
buffer is a rectangle [start, end + 1) x [offset, offset + bytes). Buffers of one alias
group share memory and share a colour. A dashed line marks the fast-memory capacity of
the mapping's budget; a panel under the plot lists the slow buffers. With `compare`, a
second mapping of the same instance is drawn beside the first on the same axes.

Only matplotlib's object-oriented API and the Agg canvas are used (no pyplot, no
global backend switch), so plotting is safe in servers, tests and worker processes.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from harness.xla.instance import Instance
from harness.humanize import human_bytes, human_seconds
from harness.model.mapping import Mapping, MappingError, fast_peak_bytes

if TYPE_CHECKING:
    from harness.model.profiles import Profile

FORMATS = ("png", "svg", "pdf")
_UNITS = (("B", 1), ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30))


def _address_unit(top: float) -> tuple[str, int]:
    """The largest unit in which `top` bytes is at least 1 (bytes for small planes)."""
    unit, scale = _UNITS[0]
    for u, s in _UNITS:
        if top >= s:
            unit, scale = u, s
    return unit, scale


def _buffer_label(instance: Instance, b: int) -> str:
    buf = instance.buffers[b]
    return buf.hlo_name + (f"{{{','.join(map(str, buf.index))}}}" if buf.index else "")


def _check_ids(instance: Instance, mapping: Mapping) -> None:
    n = len(instance.buffers)
    for b in mapping.offsets:
        if not 0 <= b < n:
            raise MappingError(f"unknown buffer id {b}: the instance has buffers 0 to {n - 1}")


def _capacity(instance: Instance, mapping: Mapping, capacity_bytes: Optional[int],
              profile: Optional["Profile"]) -> tuple[Optional[int], str]:
    """The capacity line of a panel and its label (None: no line)."""
    if mapping.budget is None:
        return None, ""
    if capacity_bytes is not None:
        return int(capacity_bytes), "capacity"
    if profile is not None:
        from harness.model.mapping import capacity

        return capacity(instance, profile, mapping.budget), f"capacity ({profile.name})"
    return int(mapping.budget * instance.peak_live_bytes), "budget x peak live"


def _slow_summary(instance: Instance, mapping: Mapping, top: int) -> str:
    slow = [b for b in range(len(instance.buffers)) if b not in mapping.offsets]
    total = sum(instance.buffers[b].bytes for b in slow)
    lines = [f"slow: {len(slow)} of {len(instance.buffers)} buffers, {human_bytes(total)} in all"]
    largest = sorted(slow, key=lambda b: (-instance.buffers[b].bytes, b))[:top]
    for b in largest:
        buf = instance.buffers[b]
        lines.append(f"  {_buffer_label(instance, b)}  {human_bytes(buf.bytes)}  "
                     f"steps {buf.start}-{buf.end}")
    if len(slow) > len(largest):
        lines.append(f"  ... and {len(slow) - len(largest)} more")
    return "\n".join(lines)


def _draw_panel(ax, text_ax, instance: Instance, mapping: Mapping, cap: Optional[int], cap_label: str,
                scale: int, unit: str, y_top: float, top_slow: int, seconds: Optional[float]) -> None:
    from matplotlib import colormaps
    from matplotlib.collections import PolyCollection
    from matplotlib.ticker import MaxNLocator

    ids = np.array(sorted(mapping.offsets), dtype=np.int64)
    n_steps = len(instance.ops) + 1
    if len(ids):
        start = np.array([instance.buffers[b].start for b in ids], dtype=float)
        end = np.array([instance.buffers[b].end for b in ids], dtype=float) + 1.0
        lo = np.array([mapping.offsets[int(b)] for b in ids], dtype=float) / scale
        hi = lo + np.array([instance.buffers[b].bytes for b in ids], dtype=float) / scale
        verts = np.stack([np.stack([start, lo], 1), np.stack([end, lo], 1),
                          np.stack([end, hi], 1), np.stack([start, hi], 1)], axis=1)
        groups = np.array([instance.buffers[b].alias_group for b in ids])
        _, colour_index = np.unique(groups, return_inverse=True)
        cmap = colormaps["tab20"]
        faces = cmap(colour_index % cmap.N)
        lw = 0.5 if len(ids) < 200 else 0.2
        ax.add_collection(PolyCollection(verts, facecolors=faces, edgecolors="0.2", linewidths=lw,
                                         alpha=0.9))
    else:
        ax.text(0.5, 0.5, "no fast buffers", transform=ax.transAxes, ha="center", va="center", color="0.4")
    if cap is not None:
        ax.axhline(cap / scale, color="crimson", linestyle="--", linewidth=1.2,
                   label=f"{cap_label}: {human_bytes(cap)}")
        ax.legend(loc="upper right", fontsize="small", framealpha=0.85)
    ax.set_xlim(0, n_steps)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # headroom above the capacity line for its legend, so that the legend hides no buffer
    ax.set_ylim(0, y_top / scale * (1.18 if cap is not None else 1.05) if y_top > 0 else 1.0)
    ax.set_xlabel("schedule step")
    ax.set_ylabel(f"fast-memory address ({unit})")
    budget = "no budget" if mapping.budget is None else f"budget {mapping.budget:g} x peak live"
    head = f"{mapping.policy or 'mapping'}, {budget}"
    sub = f"{len(ids)} fast buffers, peak {human_bytes(fast_peak_bytes(instance, mapping))} at once"
    if seconds is not None:
        sub += f"; simulated {human_seconds(seconds)}"
    ax.set_title(f"{head}\n{sub}", fontsize="medium")
    ax.grid(True, linewidth=0.3, alpha=0.5)
    text_ax.axis("off")
    text_ax.text(0.0, 1.0, _slow_summary(instance, mapping, top_slow), transform=text_ax.transAxes,
                 va="top", ha="left", family="monospace", fontsize="small")


def plot_memory_map(instance: Instance, mapping: Mapping, path: str | os.PathLike, title: Optional[str] = None,
                    compare: Optional[Mapping] = None, capacity_bytes: Optional[int] = None,
                    profile: Optional["Profile"] = None, top_slow: int = 5, dpi: int = 110) -> str:
    """Draw `mapping` of `instance` on the time x address plane and write the figure to `path`.

    Each fast buffer is a rectangle over schedule steps [start, end + 1) and addresses
    [offset, offset + bytes), coloured by alias group (tab20, cycling). When the
    mapping has a budget, a dashed line marks the capacity: `capacity_bytes` if given,
    else `harness.model.mapping.capacity` on `profile` if given, else budget x peak live
    bytes. A panel below lists the slow buffers (count, total bytes and the `top_slow`
    largest by HLO name and size). With `profile`, each panel's title also gives the
    simulated time. `compare`, a second mapping of the same instance (e.g. xla-msa
    beside the best one), is drawn in a second panel on the same axes.

    The format follows the suffix of `path`: .png (default when there is none), .svg
    or .pdf. Returns the path written. Raises MappingError for a buffer id the instance
    lacks and ValueError for an unknown format.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower().lstrip(".") or "png"
    if ext not in FORMATS:
        raise ValueError(f"cannot write a {ext!r} figure; use one of: {', '.join('.' + f for f in FORMATS)}")
    mappings = [mapping] if compare is None else [mapping, compare]
    for m in mappings:
        _check_ids(instance, m)
    caps = [_capacity(instance, m, capacity_bytes, profile) for m in mappings]
    seconds: list[Optional[float]] = [None] * len(mappings)
    if profile is not None:
        from harness.model.simulator import simulate

        seconds = [simulate(instance, m, profile) for m in mappings]
    top = max([0.0] + [float(m.offsets[b] + instance.buffers[b].bytes) for m in mappings for b in m.offsets]
              + [float(c) for c, _ in caps if c is not None])
    unit, scale = _address_unit(top)

    fig = Figure(figsize=(9.0 * len(mappings), 6.5), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, len(mappings), height_ratios=[4.2, 1.0])
    first = None
    for k, m in enumerate(mappings):
        ax = fig.add_subplot(grid[0, k], sharex=first, sharey=first)
        first = first or ax
        _draw_panel(ax, fig.add_subplot(grid[1, k]), instance, m, caps[k][0], caps[k][1], scale, unit,
                    top, top_slow, seconds[k])
    fig.suptitle(title or f"memory map of {instance.name} ({len(instance.buffers)} buffers, "
                          f"{len(instance.ops)} steps, peak live {human_bytes(instance.peak_live_bytes)})")
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    fig.savefig(path, format=ext)
    return path


__all__: Sequence[str] = ("plot_memory_map", "FORMATS")
