"""The live terminal view: rich, redrawn at every tick from the run's own task (no thread)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ._view import check_line, figures, invariant_line

if TYPE_CHECKING:
    from ._progress import Header, Progress
    from ._summary import Summary

__all__ = ["LiveView"]

_STATE_STYLES: Final = {
    "closed": "green",
    "open": "bold red",
    "half_open": "yellow",
    "forced_open": "magenta",
    "forced_closed": "magenta",
}
_RECENT: Final = 6


def _state(state: str) -> Text:
    return Text(state.replace("_", "-"), style=_STATE_STYLES.get(state, ""))


class LiveView:
    """Header, progress bar, counters, a row per endpoint's breaker and the latest breaker
    transitions, redrawn in place; the summary tables at the end."""

    def __init__(self, stream: TextIO) -> None:
        self.console = Console(file=stream, highlight=False)
        self._live: Live | None = None
        self._header: Header | None = None

    def start(self, header: Header) -> None:
        self._header = header
        s = header.settings
        self.console.print(Text(f"cloudkit-trio demo · {header.title}", style="bold"))
        self.console.print(
            f"{s.operations} operations at {s.rate:g}/s · concurrency {s.concurrency} · "
            f"fault rate {s.fault_rate:g} · seed {s.seed}",
            style="dim",
        )
        for name, url, role in header.endpoints:
            self.console.print(f"  endpoint {name}: {url} ({role})", style="dim")
        for note in header.notes:
            self.console.print(f"  {note}", style="dim")
        if header.metrics_url is not None:
            self.console.print(f"  metrics: {header.metrics_url}", style="dim")
        self._live = Live(
            Text("starting…"), console=self.console, auto_refresh=False, transient=False
        )
        self._live.start()

    def update(self, progress: Progress) -> None:
        if self._live is not None:
            self._live.update(self._render(progress), refresh=True)

    def finish(self, summary: Summary) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        table = Table(title="Summary", title_justify="left", show_edge=False)
        table.add_column("figure")
        table.add_column("value", justify="right")
        table.add_column("detail", style="dim")
        for figure, value, detail in figures(summary):
            table.add_row(figure, value, detail)
        self.console.print()
        self.console.print(table)
        endpoints = Table(title="Endpoints", title_justify="left", show_edge=False)
        for column in ("endpoint", "role", "breaker"):
            endpoints.add_column(column)
        for column in ("requests", "opened", "closed", "rejected"):
            endpoints.add_column(column, justify="right")
        for e in summary.endpoints:
            endpoints.add_row(
                e.name,
                e.role,
                _state(e.breaker_state),
                "" if e.requests is None else str(e.requests),
                str(e.opened),
                str(e.closed),
                str(e.rejected_by_breaker),
            )
        self.console.print()
        self.console.print(endpoints)
        self.console.print()
        if summary.cancelled:
            style, mark = "yellow", "?"
        elif summary.invariant_holds:
            style, mark = "bold green", "✓"
        else:
            style, mark = "bold red", "✗"
        self.console.print(Text(f"{mark} {invariant_line(summary)}", style=style))
        for check in summary.checks:
            if check.holds:
                style, mark = "bold green", "✓"
            elif check.binding:
                style, mark = "bold red", "✗"
            else:
                style, mark = "yellow", "?"
            self.console.print(Text(f"{mark} {check_line(check)}", style=style))
        if summary.interrupted:
            self.console.print("interrupted (Ctrl-C)", style="yellow")

    def _render(self, p: Progress) -> RenderableType:
        share = (
            f"{p.replied}/{p.planned} replied · {p.elapsed:.1f} s of ~{p.planned_duration:.0f} s"
        )
        if p.stopping:
            share += " · stopping (Ctrl-C): answering what is running"
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=max(p.planned, 1), completed=p.replied, width=40), share)

        counters = Table.grid(padding=(0, 2))
        names = ("submitted", "succeeded", "failed", "retries", "rejected", "refreshes")
        values = (
            p.submitted,
            p.succeeded,
            p.failed,
            p.retries,
            p.rejected_by_breaker,
            p.credential_refreshes,
        )
        counters.add_row(*(Text(name, style="dim") for name in (*names, "in flight")))
        counters.add_row(*(str(value) for value in (*values, p.inflight)))

        breakers = Table(show_edge=False, box=None, padding=(0, 1))
        breakers.add_column("endpoint")
        breakers.add_column("role", style="dim")
        breakers.add_column("breaker")
        for column in ("failures", "half-open in", "rejected", "requests"):
            breakers.add_column(column, justify="right")
        for e in p.endpoints:
            half_open = "" if e.time_until_half_open is None else f"{e.time_until_half_open:.1f} s"
            breakers.add_row(
                e.name,
                e.role,
                _state(e.state),
                f"{e.failure_ratio:.0%}",
                half_open,
                str(e.rejected),
                "" if e.requests is None else str(e.requests),
            )

        names_by_key = {e.key: e.name for e in p.endpoints}
        recent = Text()
        for t in p.transitions[-_RECENT:]:
            recent.append(f"{t.at:6.1f} s  {names_by_key.get(t.endpoint, t.endpoint)}  ")
            recent.append(_state(t.from_state))
            recent.append(" → ")
            recent.append(_state(t.to_state))
            recent.append("\n")
        credentials = (
            Text("")
            if p.credentials_expire_in is None
            else Text(f"credentials expire in {max(p.credentials_expire_in, 0):.1f} s", style="dim")
        )
        parts: list[RenderableType] = [Text(), bar, Text(), counters, Text(), breakers]
        if p.transitions:
            recent.rstrip()
            parts += [Text(), Text("breaker transitions", style="dim"), recent]
        parts += [credentials]
        return Group(*parts)
