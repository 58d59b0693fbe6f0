"""`lstm-pipeline capabilities [--measure]`: the capability table with the versions it was measured on, or
measured on this machine (bench/measure_capabilities.py) with its differences from the stored one."""
from __future__ import annotations

import json
import sys

import click

from lstm_onnx.cli.extras import require


@click.command()
@click.option("--measure", is_flag=True, help="Measure every cell on the runtimes installed here (a few "
                                              "seconds); exit 1 if a cell differs from the stored table.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the table (with --measure: the measured cells and the differences) as JSON.")
def capabilities(measure, as_json):
    """What each runtime runs natively (drives export --form auto and verify's XFAIL), and on what it was
    measured."""
    from lstm_onnx.runtimes import capabilities as cap

    if not measure:
        if as_json:
            click.echo(json.dumps({k: vars(rt) for k, rt in cap.RUNTIMES.items()}, indent=2))
        else:
            click.echo(cap.render_text())
        return
    require("capabilities --measure", "torch")
    from lstm_onnx.bench import measure_capabilities as mc

    measured = mc.measure()
    click.echo(json.dumps(mc.to_dict(measured), indent=2) if as_json else mc.report(measured))
    if mc.differences(measured):
        sys.exit(1)
