"""The `mtashift` command line."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="PowerMTA -> KumoMTA migration evidence.")
console = Console()


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=console, transient=False,
    )  # fmt: skip


@app.command("sample-estate")
def sample_estate(
    out: Annotated[Path, typer.Argument(help="estate folder: OUT/landing and OUT/truth are written")],
    days: Annotated[int, typer.Option(help="days of traffic")] = 14,
    messages_per_day: Annotated[int, typer.Option(help="messages injected per day")] = 20_000,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same bytes)")] = 7,
) -> None:
    """Generate a simulated PowerMTA -> KumoMTA estate (landing files plus ground truth)."""
    from mtashift.sim import generate

    with _progress() as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        summary = generate(out, days=days, messages_per_day=messages_per_day, seed=seed, progress=progress)
    console.print(f"landing: {out / 'landing'}\ntruth:   {out / 'truth'}")
    console.print(summary)


def _run(landing: Path, lake: Path, include_open: bool) -> None:
    from pipelines.runner import run_pipeline

    with _progress() as bar:
        task = bar.add_task("pipeline", total=None)

        def on_step(name: str, i: int, n: int) -> None:
            bar.update(task, description=name, completed=i, total=n)

        summary = run_pipeline(landing_dir=landing, lake_dir=lake, include_open=include_open, on_step=on_step)
    if summary.nothing_new:
        console.print("nothing new in the landing folder since the last successful run; lake unchanged")
        return
    if summary.skipped_days:
        console.print(
            f"[yellow]days outside the partition range, not materialised:[/] {summary.skipped_days}"
        )
    console.print(
        f"days rebuilt: {len(summary.days)}; runs: {len(summary.runs)}; views: {len(summary.views)}"
    )
    for failed_check in summary.checks_failed:
        console.print(f"[yellow]check failed:[/] {failed_check}")
    if summary.failed:
        console.print(f"[red]failed:[/] {summary.failed} (see `make ui` for the run logs)")
        raise typer.Exit(1)


@app.command()
def run(
    landing: Annotated[Path, typer.Option(help="landing folder")],
    lake: Annotated[Path, typer.Option(help="lake folder (created if missing)")],
    include_open: Annotated[bool, typer.Option(help="also read still-open KumoMTA segments")] = False,
) -> None:
    """Materialise every asset for everything in the landing folder, then refresh the catalog."""
    _run(landing, lake, include_open)
    _print_locations(lake)


def _print_locations(lake: Path) -> None:
    from mtashift.lake import Lake

    lk = Lake.at(lake)
    console.print(f"lake:    {lk.root}\ncatalog: {lk.catalog}")
    if lk.reports.exists():
        for p in sorted(lk.reports.glob("*.html")):
            console.print(f"report:  {p}")
    if lk.kumo.exists():
        console.print(f"kumo:    {lk.kumo}")


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL over the catalog views")],
    lake: Annotated[Path, typer.Option(help="lake folder")] = Path("demo/lake"),
    limit: Annotated[int, typer.Option(help="rows to print")] = 50,
) -> None:
    """Print a query result from the catalog (opened read-only)."""
    from mtashift.catalog import query as run_query
    from mtashift.lake import Lake

    df = run_query(Lake.at(lake), query)
    table = Table(*df.columns)
    for row in df.head(limit).iter_rows():
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)
    if df.height > limit:
        console.print(f"… {df.height - limit} more rows")


@app.command()
def report(lake: Annotated[Path, typer.Option(help="lake folder")] = Path("demo/lake")) -> None:
    """Re-render the reports from the catalog without recomputing anything."""
    from mtashift import catalog as duck_catalog
    from mtashift.lake import Lake
    from mtashift.reports.spec import render_all

    lk = Lake.at(lake)
    duck_catalog.refresh(lk)
    for name, path in render_all(lk).items():
        console.print(f"{name}: {path}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="where the demo estate and lake go")] = Path("demo"),
    days: Annotated[int, typer.Option()] = 14,
    messages_per_day: Annotated[int, typer.Option()] = 20_000,
    seed: Annotated[int, typer.Option()] = 7,
) -> None:
    """Generate the default sample estate and run the whole pipeline on it."""
    estate = out / "estate"
    if not (estate / "landing").exists():
        sample_estate(estate, days=days, messages_per_day=messages_per_day, seed=seed)
    _run(estate / "landing", out / "lake", False)
    _print_locations(out / "lake")
    console.print(f"truth:   {(estate / 'truth').resolve()}\nUI:      make ui  (http://127.0.0.1:3000)")


if __name__ == "__main__":
    app()
