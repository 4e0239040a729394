"""The live terminal view: rich, redrawn at every frame from the run's own task (no thread)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ._views import endpoint_rows, figure_rows, header_lines, transition_text, verdict_lines

if TYPE_CHECKING:
    from ._report import Frame, Summary
    from ._scenario import Settings, Target

__all__ = ["LiveView"]

#: Breaker transitions kept on screen; the summary lists them all.
RECENT: Final = 8
_STYLES: Final = {
    "healthy": "green",
    "in use": "green",
    "failing": "yellow",
    "recovering": "cyan",
    "down": "bold red",
}


def _table(*columns: str) -> Table:
    table = Table(show_edge=False, box=None, padding=(0, 1))
    for column in columns:
        table.add_column(column)
    return table


def _endpoints(f: Frame) -> Table:
    table = _table(
        "endpoint", "now", "breaker", "failures of calls in window", "requests", "rejected"
    )
    for name, doing, *rest in endpoint_rows(f):
        table.add_row(name, Text(doing, style=_STYLES.get(doing, "")), *rest)
    return table


class LiveView:
    """Header, progress, counters, the endpoints now and the recent breaker transitions
    redrawn in place; the summary tables at the end."""

    def __init__(self, stream: TextIO) -> None:
        self.console = Console(file=stream, highlight=False)
        self._live: Live | None = None

    def start(self, target: Target, settings: Settings, metrics_url: str | None) -> None:
        title, *rest = header_lines(target, settings, metrics_url)
        self.console.print(Text(title, style="bold"))
        for line in rest:
            self.console.print(line, style="dim")
        self._live = Live(Text("starting…"), console=self.console, auto_refresh=False)
        self._live.start()

    def update(self, frame: Frame) -> None:
        if self._live is not None:
            self._live.update(self._render(frame), refresh=True)

    def finish(self, summary: Summary) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        f = summary.frame
        figures = Table(title="Summary", title_justify="left", show_edge=False)
        for column in ("figure", "value", "detail"):
            figures.add_column(column, justify="right" if column == "value" else "left")
        for row in figure_rows(f):
            figures.add_row(*row)
        self.console.print()
        self.console.print(figures)
        self.console.print()
        self.console.print(Text(f"breaker transitions ({len(f.transitions)})", style="bold"))
        for t in f.transitions:
            self.console.print(f"  {transition_text(f, t)}")
        for key, document in summary.extra.items():
            self.console.print(f"{key}: " + ", ".join(f"{k} {v}" for k, v in document.items()))
        self.console.print()
        words, *checks = verdict_lines(summary.verdict)
        self.console.print(
            Text(words, style="bold green" if summary.verdict.passed else "bold red")
        )
        for line in checks:
            self.console.print(line)

    def _render(self, f: Frame) -> RenderableType:
        done = (
            f"{f.replied}/{f.planned} answered · {f.elapsed:.1f} s of ~{f.planned_duration:.0f} s"
        )
        if f.stopping:
            done += " · stopping (Ctrl-C): answering what is running"
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=max(f.planned, 1), completed=f.replied, width=40), done)
        counters = Table.grid(padding=(0, 2))
        rows = figure_rows(f)[1:9]
        counters.add_row(*(Text(name, style="dim") for name, _, _ in rows))
        counters.add_row(*(value for _, value, _ in rows))
        shares = _table("", "")
        for name, _, detail in rows:
            if name in ("failed", "fast rejections", "retries", "rejected by breaker"):
                shares.add_row(Text(name, style="dim"), Text(detail, style="dim"))
        recent = [Text(transition_text(f, t)) for t in f.transitions[-RECENT:]]
        if len(f.transitions) > RECENT:
            recent.insert(0, Text(f"… {len(f.transitions) - RECENT} earlier", style="dim"))
        parts: list[RenderableType] = [
            Text(),
            bar,
            Text(),
            counters,
            shares,
            Text(),
            _endpoints(f),
            Text(),
        ]
        parts.append(Text(f"breaker transitions ({len(f.transitions)})", style="dim"))
        parts += recent or [Text("  none yet", style="dim")]
        if f.credentials_expire_in is not None:
            parts.append(
                Text(f"credentials expire in {max(f.credentials_expire_in, 0):.1f} s", style="dim")
            )
        return Group(*parts)
