"""PNG charts of a load run beside the OpenBao Transit peer.

    python benchmarks/load.py --duration 5 --subjects 2000 --json load.json
    python benchmarks/peers_transit.py --duration 5 --json transit.json
    python benchmarks/charts.py load.json transit.json      # -> benchmarks/charts/*.png

Reads the JSON that ``load.py --json`` and ``peers_transit.py --json`` write
(the same shape: ``phases``, one row per call, and ``health_rps``, the mean of
the two bare-health phases of that run) and draws:

- ``rps.png``: RPS per call (left) and the same as a ratio to the run's own
  health floor (right; the figure that survives a noisy machine). The vault's
  calls in one colour, each Transit call beside the vault call it stands for
  (``peer_of``: ``put``, ``get-plaintext``, ``batch-get-100``), the health
  floors as lines. Batches are labelled with items/s.
- ``latency.png``: p50 and p99 per call, log scale, vault and Transit.

The transit file is optional. matplotlib comes from the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

OUT = Path(__file__).resolve().parent / "charts"
VAULT_COLOUR, PEER_COLOUR, FLOOR_COLOUR = "#1f77b4", "#ff7f0e", "#555555"


def load(path: str) -> dict[str, Any]:
    return dict(json.loads(Path(path).read_text(encoding="utf-8")))


def measured(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a report, without its two health phases."""
    return [r for r in report["phases"] if not r["call"].startswith("health")]


def slots(vault: dict[str, Any], peer: dict[str, Any] | None) -> list[tuple[str, Any, Any]]:
    """(label, vault row or None, peer row or None), a peer row beside the call it stands for."""
    peers = {r.get("peer_of"): r for r in measured(peer)} if peer else {}
    out: list[tuple[str, Any, Any]] = []
    for row in measured(vault):
        partner = peers.pop(row["call"], None)
        label = row["call"] if partner is None else f"{row['call']}\n| {partner['call']}"
        out.append((label, row, partner))
    out += [(f"| {r['call']}", None, r) for r in peers.values()]
    return out


def _bars(axis: Any, places: list[tuple[str, Any, Any]], key: str) -> None:
    width = 0.4
    for i, (_, row, partner) in enumerate(places):
        for offset, item, colour in (
            (-width / 2, row, VAULT_COLOUR),
            (width / 2, partner, PEER_COLOUR),
        ):
            if item is None:
                continue
            value = item[key]
            axis.bar(i + offset, value, width, color=colour)
            text = f"{value:,.0f}" if key == "rps" else f"{value:.2f}"
            if "fields_per_s" in item:
                text += f"\n{item['fields_per_s']:,.0f}/s items"
            axis.annotate(text, (i + offset, value), ha="center", va="bottom", fontsize=7)
    axis.set_xticks(range(len(places)), [p[0] for p in places], fontsize=8, rotation=30, ha="right")


def rps_chart(vault: dict[str, Any], peer: dict[str, Any] | None, path: Path) -> None:
    places = slots(vault, peer)
    figure, (left, right) = plt.subplots(1, 2, figsize=(15, 5.5))
    _bars(left, places, "rps")
    left.axhline(
        vault["health_rps"], color=VAULT_COLOUR, ls="--", lw=1,
        label=f"vault: bare gRPC health {vault['health_rps']:,.0f}/s",
    )  # fmt: skip
    if peer:
        left.axhline(
            peer["health_rps"], color=PEER_COLOUR, ls="--", lw=1,
            label=f"Transit: /v1/sys/health {peer['health_rps']:,.0f}/s",
        )  # fmt: skip
    left.legend(fontsize=8, loc="upper right")
    left.set_ylabel("calls / s (OK, measured window)")
    left.set_title("RPS per call")
    _bars(right, places, "ratio")
    right.axhline(1.0, color=FLOOR_COLOUR, ls="--", lw=1, label="each server's health floor = 1")
    right.legend(fontsize=8, loc="upper right")
    right.set_ylabel("RPS / the same server's health RPS, same run")
    right.set_title("ratio to the health floor")
    handles = [plt.Rectangle((0, 0), 1, 1, color=VAULT_COLOUR)]
    names = ["pii-vault (gRPC, mTLS)"]
    if peer:
        handles.append(plt.Rectangle((0, 0), 1, 1, color=PEER_COLOUR))
        names.append("OpenBao Transit (HTTP, aiohttp)")
    figure.legend(handles, names, loc="upper center", ncol=2, fontsize=9)
    figure.suptitle(_subtitle(vault, peer), fontsize=7, y=0.01, va="bottom")
    figure.tight_layout(rect=(0, 0.06, 1, 0.93))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def latency_chart(vault: dict[str, Any], peer: dict[str, Any] | None, path: Path) -> None:
    floor = [r for r in (vault, peer) if r]
    before = [next(p for p in r["phases"] if p["call"] == "health (before)") for r in floor]
    places = [("health (before)", before[0], before[1] if peer else None), *slots(vault, peer)]
    figure, axis = plt.subplots(figsize=(12, 5.5))
    width = 0.2
    series = (
        (-1.5 * width, "p50_ms", VAULT_COLOUR, 1.0, 1),
        (-0.5 * width, "p99_ms", VAULT_COLOUR, 0.5, 1),
        (0.5 * width, "p50_ms", PEER_COLOUR, 1.0, 2),
        (1.5 * width, "p99_ms", PEER_COLOUR, 0.5, 2),
    )
    for offset, key, colour, alpha, which in series:
        for i, place in enumerate(places):
            item = place[which]
            if item is None:
                continue
            axis.bar(i + offset, item[key], width, color=colour, alpha=alpha)
            axis.annotate(
                f"{item[key]:.1f}", (i + offset, item[key]), ha="center", va="bottom", fontsize=6
            )
    for floor, colour in ((_health(vault), VAULT_COLOUR), (_health(peer), PEER_COLOUR)):
        if floor is not None:
            axis.axhline(floor, color=colour, ls=":", lw=1)
    axis.set_yscale("log")
    axis.set_ylabel("latency, ms (log)")
    axis.set_xticks(range(len(places)), [p[0] for p in places], fontsize=8, rotation=30, ha="right")
    axis.set_title("p50 (solid) and p99 (light) per call; dotted: p99 of the health floor")
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=VAULT_COLOUR),
        plt.Rectangle((0, 0), 1, 1, color=PEER_COLOUR),
    ]
    axis.legend(handles, ["pii-vault", "OpenBao Transit"][: 2 if peer else 1], fontsize=8)
    figure.suptitle(_subtitle(vault, peer, 150), fontsize=7, y=0.01, va="bottom")
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _health(report: dict[str, Any] | None) -> float | None:
    if not report:
        return None
    rows = [r["p99_ms"] for r in report["phases"] if r["call"].startswith("health")]
    return sum(rows) / len(rows) if rows else None


def _subtitle(vault: dict[str, Any], peer: dict[str, Any] | None, width: int = 190) -> str:
    lines = [f"vault: {vault['title']}"]
    if peer:
        lines.append(f"peer: {peer['title']}")
    return "\n".join(textwrap.fill(line, width) for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("load_json", help="what benchmarks/load.py --json wrote")
    parser.add_argument("transit_json", nargs="?", default="", help="peers_transit.py --json")
    parser.add_argument("--out", default=str(OUT), help=f"directory for the PNGs (default {OUT})")
    args = parser.parse_args(argv)
    vault = load(args.load_json)
    peer = load(args.transit_json) if args.transit_json else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rps_chart(vault, peer, out / "rps.png")
    latency_chart(vault, peer, out / "latency.png")
    print(f"wrote {out / 'rps.png'} and {out / 'latency.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
