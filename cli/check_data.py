"""`lstm-pipeline check-data`: the data-quality report of a run config's CSV, or of a CSV file."""
from __future__ import annotations

import json
from pathlib import Path

import click


def _config(source: str, time_column, series_column, features, targets, drop, missing):
    from lstm_onnx.pipeline.config import DataConfig, load_run_config

    if source.endswith(".toml"):
        try:
            data = load_run_config(source).data
        except FileNotFoundError:
            raise click.ClickException(f"config not found: {source}") from None
        except (ValueError, TypeError) as exc:
            raise click.ClickException(f"bad config {source}: {exc}") from None
        overrides = {"time_column": time_column, "series_column": series_column, "missing": missing}
        for name, value in overrides.items():
            if value is not None:
                setattr(data, name, value)
        return data
    split = lambda text: [t.strip() for t in text.split(",") if t.strip()] if text else []  # noqa: E731
    try:
        return DataConfig(task="csv", csv=source, time_column=time_column or "", series_column=series_column or "",
                          features=split(features),
                          targets=split(targets), drop_columns=split(drop), missing=missing or "error")
    except (ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from None


def run_check(data):
    """The report of `data` (a DataConfig of task 'csv'); ClickException when the CSV can't be read."""
    from lstm_onnx.pipeline.data import CSVError
    from lstm_onnx.pipeline.quality import check_csv

    try:
        return check_csv(data)
    except CSVError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("check-data")
@click.argument("source", metavar="CONFIG_OR_CSV", type=click.Path(dir_okay=False))
@click.option("--time-column", help="A timestamp column that must increase (CSV: the one column of ISO dates, if "
                                    "any; config: data.time_column).")
@click.option("--series-column", help="The series id of each row: each series is checked on its own (config: "
                                      "data.series_column).")
@click.option("--features", help="CSV: comma-separated input columns (default: all but --drop).")
@click.option("--targets", help="CSV: comma-separated target columns (default: the features).")
@click.option("--drop", help="CSV: comma-separated columns to ignore (e.g. a date column).")
@click.option("--missing", type=click.Choice(["error", "interpolate", "drop"]),
              help="How training treats missing values (CSV default: error; config: data.missing).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a PNG: each column's distribution per split.")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too, not only on errors.")
def check_data(source, time_column, series_column, features, targets, drop, missing, as_json, plot, strict):
    """Report missing values, constant columns, time order, outliers, float32 overflow, drift between the
    train/val/test splits and future leakage, on the values training would read. Exit 1 on errors."""
    data = _config(source, time_column, series_column, features, targets, drop, missing)
    if data.task != "csv":
        click.echo(f"task {data.task!r} generates its data: nothing to check")
        return
    report = run_check(data)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else "\n".join(report.lines()))
    if plot:
        from lstm_onnx.pipeline.quality import plot_splits

        try:
            plot_splits(report, Path(plot))
        except (ValueError, OSError) as exc:
            raise click.ClickException(str(exc)) from None
        if not as_json:
            click.echo(f"wrote {plot}")
    if report.errors or (strict and report.warnings):
        raise SystemExit(1)  # the report is the message; a ClickException would repeat it
