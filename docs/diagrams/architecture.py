#!/usr/bin/env python3
"""Draws docs/architecture.png: the processes, sockets and maps of one attachment.

Usage: python3 docs/diagrams/architecture.py   (needs python3-matplotlib)
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   "architecture.png")


def box(ax, x, y, w, h, text, color):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", linewidth=1.2,
                                edgecolor="#333333", facecolor=color))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9, wrap=True)


def arrow(ax, start, end, text="", style="-|>", color="#333333", dashed=False):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=12, color=color,
                                 linestyle="--" if dashed else "-", linewidth=1.2))
    if text:
        ax.text((start[0] + end[0]) / 2 + 0.1, (start[1] + end[1]) / 2, text, fontsize=8,
                color=color)


def main():
    fig, ax = plt.subplots(figsize=(11, 7.5))
    ax.set_xlim(0, 11)
    ax.set_ylim(0, 7.5)
    ax.axis("off")

    box(ax, 0.2, 6.3, 1.6, 0.8, "clients", "#ffffff")
    box(ax, 2.6, 5.6, 5.6, 1.6,
        "kernel: SO_REUSEPORT group\nsd_dispatch (sk_reuseport/migrate) on every SYN:\n"
        "reads `slots` + `config`, picks a socket from `sockets`;\n"
        "on a closing listener (migrating_sk) moves its queue to a live worker", "#dbe9f6")
    box(ax, 8.6, 5.6, 2.2, 1.6,
        "pinned maps\n/sys/fs/bpf/sockdispatch/PORT\nslots (mmapped)\nconfig, verdicts,\n"
        "sockets, program", "#fdebd0")
    arrow(ax, (1.8, 6.7), (2.6, 6.5), "SYN")

    for i, x in enumerate((2.6, 4.6, 6.6)):
        name = ["listener 0", "listener 1", "listener N-1"][i]
        box(ax, x, 4.2, 1.6, 0.6, name + "\naccept queue", "#e8f6e8")
        arrow(ax, (x + 0.8, 5.6), (x + 0.8, 4.8))
        name = ["worker 0", "worker 1", "worker N-1"][i]
        box(ax, x, 2.2, 1.6, 1.2, name + "\nnative: libevent,\nllhttp, handler\nor exec: COMMAND",
            "#fef9e7")
        arrow(ax, (x + 0.8, 4.2), (x + 0.8, 3.4), "accept" if i == 0 else "", color="#1e8449")
        arrow(ax, (x + 0.8, 1.3), (x + 0.8, 2.2), dashed=True, color="#7d3c98")
    ax.text(2.7, 1.65, "fork (+ exec); control channel or --stop-signal", fontsize=8,
            color="#7d3c98")

    box(ax, 8.6, 3.7, 1.6, 1.4,
        "foreign_load\n(tp_btf on TCP\nstate changes):\nexec workers'\nopen, queued", "#dbe9f6")
    arrow(ax, (9.4, 5.1), (9.4, 5.6), color="#b9770e")

    box(ax, 2.6, 0.2, 5.6, 1.1,
        "master: keeps every listener, the programs and the maps;\nslots driven through a "
        "Dispatch (reuseport | line) and a WorkerKind\n(native | exec); respawn, reload "
        "generations, dynamic pool, signals",
        "#f4ecf7")
    box(ax, 8.6, 0.2, 2.2, 1.1, "CLI: status, tune,\nreload, detach\n(and bpftool)", "#ffffff")
    arrow(ax, (10.5, 1.3), (10.5, 5.6), "read /\nwrite", color="#b9770e")
    arrow(ax, (8.6, 0.75), (8.2, 0.75), color="#b9770e")
    ax.text(8.25, 0.9, "signal", fontsize=8, color="#b9770e")
    arrow(ax, (8.2, 2.8), (8.7, 5.6), "", color="#b9770e", dashed=True)
    ax.text(8.25, 1.9, "native:\nopen, accepted,\nrequests", fontsize=8, color="#b9770e")
    ax.set_title("sockdispatch: one attachment", fontsize=12)
    fig.savefig(OUT, dpi=110, bbox_inches="tight")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
