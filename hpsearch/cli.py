"""The `hpsearch` command: thin commands that parse arguments and call one library function.

Expected failures print one `error: ...` line and exit 2 (bad input) or 1 (run-time failure);
Ctrl-C exits 130 after the running trial has been marked FAIL.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
import warnings

import click
import optuna
import sqlalchemy

from hpsearch import config as config_module
from hpsearch import console, interrupt, results, runner, storage_proxy, workers
from hpsearch.protocol import lr_find_study, test_phase
from hpsearch.protocol import run as protocol_run
from hpsearch.errors import HpsearchError
from hpsearch.storage import STORAGE_ENV, storage_failure

DEBUG_ENV = "HPSEARCH_DEBUG"  # 1: show the whole traceback behind an error line

STORAGE_HELP = f"Storage URL (default: ${STORAGE_ENV}, else sqlite:///storage/hpsearch.db)."
STUDIES_DIR_HELP = (
    "Folder of your study files (default: $HPSEARCH_STUDIES_DIR, else ./studies if it "
    "exists); a file there overrides the installed phase of the same name."
)

# Options shared by several commands: one definition each.
tag_option = click.option(
    "--tag", help="Protocol run tag: studies are stored as NAME@TAG and inherit from NAME@TAG."
)
storage_option = click.option("--storage", help=STORAGE_HELP)
set_option = click.option(
    "--set", "settings", multiple=True, metavar="KEY=VALUE",
    help="Override a training setting (repeatable; highest precedence).",
)
device_option = click.option("--device", help="cpu, cuda, cuda:N or auto (default: auto).")
data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False),
    help="Data folder (default: $HPSEARCH_DATA_DIR, else storage/data).",
)
studies_dir_option = click.option("--studies-dir", help=STUDIES_DIR_HELP)


def _enable_debug(context: click.Context, parameter, value: bool) -> None:
    if value:
        os.environ[DEBUG_ENV] = "1"


debug_option = click.option(
    "--debug", is_flag=True, expose_value=False, callback=_enable_debug, is_eager=True,
    help=f"Show the whole traceback behind an error (or set {DEBUG_ENV}=1).",
)


def reports_errors(command):
    """Turn hpsearch's named errors and Ctrl-C into one line and an exit code; with --debug,
    the traceback of what caused it (the user's code, torch...) comes first."""

    @debug_option
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            try:
                return command(*args, **kwargs)
            except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as err:
                raise storage_failure(err) from err
        except HpsearchError as err:
            if os.environ.get(DEBUG_ENV) == "1":
                traceback.print_exception(err, file=sys.stderr)
            click.echo(f"error: {err}", err=True)
            sys.exit(err.exit_code)
        except (KeyboardInterrupt, interrupt.StopRequested) as err:
            line = err.line() if isinstance(err, interrupt.Interrupted) else (
                "interrupted; fix: rerun the same command to go on")
            click.echo(f"error: {line}", err=True)
            sys.exit(interrupt.EXIT_INTERRUPTED)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hpsearch")
@debug_option
def cli() -> None:
    """Optuna-driven hyperparameter search for PyTorch, one protocol phase per study."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # we report trials ourselves
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@cli.command()
@click.option("--study", "study", required=True, help="Study name in the studies folder, or a YAML path.")
@click.option("--trials", type=click.IntRange(min=0, max=1_000_000), help="Budget: COMPLETE+PRUNED trials (default: the file's).")
@storage_option
@set_option
@device_option
@data_dir_option
@click.option("--name", help="Store the run under this study name instead of the file's.")
@tag_option
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Parallel worker processes sharing the budget.")
@click.option("--devices", help="Comma-separated devices for the workers, round-robin (e.g. cuda:0,cuda:1).")
@click.option("--retries", type=click.IntRange(min=0, max=100), default=0, show_default=True, help="Queue a trial that raises again, same parameters, up to N times.")
@studies_dir_option
@reports_errors
def run(study, trials, storage, settings, device, data_dir, name, tag, jobs, devices, retries, studies_dir) -> None:
    """Run (or resume) a study until it has its budget of trials."""
    overrides = _overrides(settings, device, data_dir)
    interrupt.install()  # Ctrl-C or SIGTERM: the trial fails cleanly at its next batch
    common = dict(trials=trials, storage=storage, name=name, studies_dir=studies_dir, tag=tag,
                  retries=retries)
    with console.ProgressObserver() as progress:
        if jobs == 1 and not devices:
            summary = runner.run_study(study, overrides=overrides, observer=progress, **common)
        else:
            summary = workers.run_workers(
                study, jobs=jobs, devices=devices.split(",") if devices else None,
                overrides=overrides, observer=progress, **common,
            )
    console.print_run_summary(summary, results.load_study(summary.study_name, storage))


def _overrides(settings, device, data_dir) -> dict:
    overrides = config_module.parse_set_options(settings)
    overrides.update({k: v for k, v in (("device", device), ("data_dir", data_dir)) if v})
    return overrides


@cli.command()
@storage_option
@studies_dir_option
@reports_errors
def studies(storage, studies_dir) -> None:
    """List the study files (yours, then the installed phases) with where each comes from,
    its phase, trials done and best value."""
    console.print_studies(results.overview(studies_dir, storage))


@cli.command()
@click.option("--study", "study", required=True, help="Stored study name.")
@storage_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@reports_errors
def best(study, storage, as_json) -> None:
    """Show the best trial: value, parameters and resolved configuration."""
    console.print_best(results.best(study, storage), as_json)


@cli.command()
@click.option("--from", "start", metavar="PHASE", help="First phase to run (default: setup).")
@click.option("--to", "stop", metavar="PHASE", help="Last phase to run (default: test).")
@click.option("--trials-scale", type=float, default=1.0, show_default=True, help="Multiply every non-grid phase's trial budget.")
@storage_option
@set_option
@device_option
@data_dir_option
@tag_option
@studies_dir_option
@reports_errors
def protocol(start, stop, trials_scale, storage, settings, device, data_dir, tag, studies_dir) -> None:
    """Run PROTOCOL.md's phases in order, each from the choices of the phases before it."""
    overrides = _overrides(settings, device, data_dir)
    interrupt.install()
    display = console.PhaseProgress()
    try:
        protocol_run.run_protocol(
            studies_dir=studies_dir, storage=storage, overrides=overrides, start=start,
            stop=stop, trials_scale=trials_scale, tag=tag, observer=display.observer,
            on_phase=display.on_phase,
        )
    finally:
        display.close()


@cli.command("test")
@click.option("--study", "study", required=True, help="Stored study whose choice is tested.")
@storage_option
@click.option("--force", is_flag=True, help="Evaluate again although the study was tested.")
@device_option
@data_dir_option
@reports_errors
def test_command(study, storage, force, device, data_dir) -> None:
    """Train the study's chosen configuration and evaluate it once on the test split."""
    result = test_phase.run_test(study, storage, force=force, overrides=_overrides((), device, data_dir))
    click.echo(
        f"{study}: {test_phase.result_text(result)} "
        f"(trial {result['trial']}'s configuration, {result['epochs']} epochs)"
    )


@cli.command("lr-find")
@click.option("--study", "study", required=True, help="Study whose configuration is tested.")
@storage_option
@set_option
@device_option
@data_dir_option
@click.option("--plot", type=click.Path(dir_okay=False), help="PNG path (default: storage/plots/lr_find_STUDY.png).")
@click.option("--record", is_flag=True, help="Store the range on the study: its LR search uses it.")
@tag_option
@studies_dir_option
@reports_errors
def lr_find(study, storage, settings, device, data_dir, plot, record, tag, studies_dir) -> None:
    """LR range test: raise the LR every batch until the loss explodes; suggest an LR."""
    found = lr_find_study.find_for_study(
        study, storage=storage, overrides=_overrides(settings, device, data_dir),
        studies_dir=studies_dir, plot=plot, record=record, tag=tag,
    )
    click.echo(
        f"{found['study']}: suggested lr {found['suggested']:.3g}, range "
        f"[{found['low']:.3g}, {found['high']:.3g}] ({found['reason']}, {found['steps']} steps); "
        f"plot: {found['plot']}" + ("; recorded on the study" if record else "")
    )


@cli.command("storage-proxy")
@click.option("--storage", required=True, help="The database the proxy serves (PostgreSQL URL).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface; no authentication).")
@click.option("--port", type=click.IntRange(1, 65535), default=storage_proxy.DEFAULT_PORT,
              show_default=True)
@click.option("--connections", type=click.IntRange(1, 1000),
              default=storage_proxy.PROXY_CONNECTIONS, show_default=True,
              help="Database connections (and threads) the proxy holds for all its workers.")
@reports_errors
def storage_proxy_command(storage, host, port, connections) -> None:
    """Serve a storage to many workers over gRPC (workers: --storage grpc://HOST:PORT)."""
    storage_proxy.serve(storage, host=host, port=port, connections=connections)


@cli.command()
@reports_errors
def settings() -> None:
    """List every training setting with its type, default and allowed values (for `base`,
    `space`, `--set`)."""
    settings_ = config_module.TrainConfig().to_dict()
    width = max(16, *(len(name) + 1 for name in settings_))
    for name, value in settings_.items():
        kind = config_module.base_type(name).__name__
        choices = config_module.CHOICES.get(name)
        named = config_module.NAMES_OR_PATHS.get(name)
        extra = f"  one of: {', '.join(choices)}" if choices else ""
        extra = f"  one of: {', '.join(named)}, or an import path" if named else extra
        bounds = config_module.RANGES.get(name)
        extra = f"  range: {bounds.text(name)}" if bounds else extra
        click.echo(f"{name:<{width}} {kind:<6} default {value!r}{extra}")


def main() -> None:
    """Console-script entry point."""
    cli()
