"""The `hpsearch` command: thin commands that parse arguments and call one library function.

Expected failures print one `error: ...` line and exit 2 (bad input) or 1 (run-time failure);
Ctrl-C exits 130 after the running trial has been marked FAIL. The library is imported by
the command that needs it: `--help` and the commands that only read (studies, best, trials,
summary, settings, report) never import torch.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
import warnings

import click

from hpsearch import config as config_module
from hpsearch import interrupt, storage_proxy
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
study_option = click.option(
    "--study", "study", required=True,
    help="Stored study: a name, NAME@TAG, or a study file's path (its name).")
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
tensorboard_option = click.option(
    "--tensorboard", type=click.Path(file_okay=False),
    help="Write each trial's TensorBoard event files under this folder: losses, weight and "
         "input-gradient histograms, output entropy (off by default).")
artifacts_option = click.option(
    "--artifacts", type=click.Path(file_okay=False),
    help="Folder of the kept models (default: $HPSEARCH_ARTIFACTS, else artifacts/ beside a "
         "SQLite file, else storage/artifacts; one shared folder for workers on several "
         "machines).")


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
        import optuna
        import sqlalchemy

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
    import optuna

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
@artifacts_option
@tensorboard_option
@reports_errors
def run(study, trials, storage, settings, device, data_dir, name, tag, jobs, devices, retries, studies_dir, artifacts, tensorboard) -> None:
    """Run (or resume) a study until it has its budget of trials."""
    from hpsearch import console, runner, workers
    from hpsearch.storage import connect, load_study

    overrides = _overrides(settings, device, data_dir)
    interrupt.install()  # Ctrl-C or SIGTERM: the trial fails cleanly at its next batch
    common = dict(trials=trials, storage=storage, name=name, studies_dir=studies_dir, tag=tag,
                  retries=retries, artifacts=artifacts, tensorboard=tensorboard)
    with console.ProgressObserver() as progress:
        if jobs == 1 and not devices:
            summary = runner.run_study(study, overrides=overrides, observer=progress, **common)
        else:
            summary = workers.run_workers(
                study, jobs=jobs, devices=devices.split(",") if devices else None,
                overrides=overrides, observer=progress, **common,
            )
    console.print_run_summary(summary, load_study(connect(storage), summary.study_name))


def _overrides(settings, device, data_dir) -> dict:
    overrides = config_module.parse_set_options(settings)
    overrides.update({k: v for k, v in (("device", device), ("data_dir", data_dir)) if v})
    return overrides


@cli.command()
@storage_option
@studies_dir_option
@tag_option
@reports_errors
def studies(storage, studies_dir, tag) -> None:
    """List the study files (yours, then the installed phases) with where each comes from,
    its phase, trials done, best value and the protocol's choice (of NAME@TAG with --tag)."""
    from hpsearch import console
    from hpsearch.results import overview

    console.print_studies(overview(studies_dir, storage, tag=tag))


@cli.command()
@study_option
@storage_option
@tag_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@reports_errors
def best(study, storage, tag, as_json) -> None:
    """Show the best trial and the protocol's choice: why, in words, its runners-up with their
    parameters, the trials it eliminated, and its test result."""
    from hpsearch import console
    from hpsearch.results import best as best_of

    console.print_best(best_of(study, storage, tag=tag), as_json)


@cli.command()
@study_option
@storage_option
@tag_option
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write every column to this CSV file.")
@click.option("--json", "as_json", is_flag=True, help="Print every column as JSON records.")
@reports_errors
def trials(study, storage, tag, csv_path, as_json) -> None:
    """One row per trial: state, objective, parameters, epochs, chosen / baseline flags, why it
    did not complete, and every criterion (in --csv and --json)."""
    from hpsearch import console
    from hpsearch.results import trials as trials_of

    frame = trials_of(study, storage, tag=tag)
    if csv_path:
        frame.to_csv(csv_path, index=False)
        click.echo(f"{len(frame)} trials written to {csv_path}")
    elif as_json:
        click.echo(frame.to_json(orient="records", indent=2))
    else:
        console.print_trials(frame, study)


@cli.command()
@storage_option
@tag_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON records instead of a table.")
@reports_errors
def summary(storage, tag, as_json) -> None:
    """One row per protocol phase, in order: its choice, main criterion, trials, why skipped,
    and the test result."""
    from hpsearch import console
    from hpsearch.results import summary as summary_of

    frame = summary_of(storage, tag=tag)
    if as_json:
        click.echo(frame.to_json(orient="records", indent=2))
    else:
        console.print_summary(frame, tag)


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
@artifacts_option
@tensorboard_option
@reports_errors
def protocol(start, stop, trials_scale, storage, settings, device, data_dir, tag, studies_dir, artifacts, tensorboard) -> None:
    """Run PROTOCOL.md's phases in order, each from the choices of the phases before it."""
    from hpsearch import console
    from hpsearch.phases import protocol as protocol_run

    overrides = _overrides(settings, device, data_dir)
    interrupt.install()
    display = console.PhaseProgress()
    try:
        protocol_run.run_protocol(
            studies_dir=studies_dir, storage=storage, overrides=overrides, start=start,
            stop=stop, trials_scale=trials_scale, tag=tag, observer=display.observer,
            on_phase=display.on_phase, artifacts=artifacts, tensorboard=tensorboard,
        )
    finally:
        display.close()


@cli.command("test")
@study_option
@storage_option
@tag_option
@click.option("--force", is_flag=True, help="Evaluate again although the study was tested.")
@device_option
@data_dir_option
@artifacts_option
@reports_errors
def test_command(study, storage, tag, force, device, data_dir, artifacts) -> None:
    """Train the study's chosen configuration and evaluate it once on the test split; the
    tested model is kept (`hpsearch export --which tested`)."""
    from hpsearch.phases.test_set import run_test
    from hpsearch.storage import study_name

    result = run_test(study, storage, force=force, overrides=_overrides((), device, data_dir),
                      tag=tag, artifacts=artifacts)
    click.echo(f"{study_name(study, tag)}: {result.text()} (trial {result.trial}'s "
               f"configuration, {result.epochs} epochs)")


@cli.command()
@study_option
@storage_option
@tag_option
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="File to write (e.g. model.pt).")
@click.option("--which", type=click.Choice(["chosen", "tested"]), default="chosen", show_default=True,
              help="The phase's chosen trial, or the model the test phase trained and tested.")
@artifacts_option
@reports_errors
def export(study, storage, tag, out, which, artifacts) -> None:
    """Write a study's kept model to a file: weights, optimizer and scheduler state, the
    resolved configuration (hpsearch.load_model(FILE) rebuilds it)."""
    from hpsearch.results.artifacts import export_model
    from hpsearch.storage import study_name

    path = export_model(study, out, storage, tag=tag, which=which, artifacts=artifacts)
    click.echo(f"{study_name(study, tag)}: {which} model written to {path} "
               f"({path.stat().st_size:,} bytes); load it with hpsearch.load_model({str(path)!r})")


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
    from hpsearch.phases.lr_range import find_for_study

    found = find_for_study(
        study, storage=storage, overrides=_overrides(settings, device, data_dir),
        studies_dir=studies_dir, plot=plot, record=record, tag=tag,
    )
    lrs = found.range
    click.echo(
        f"{found.study}: suggested lr {lrs.suggested:.3g}, range [{lrs.low:.3g}, "
        f"{lrs.high:.3g}] ({found.reason}, {found.steps} steps); plot: {found.plot}"
        + ("; recorded on the study" if found.recorded else "")
    )


@cli.command()
@study_option
@storage_option
@tag_option
@click.option("--kind", type=click.Choice(["curves", "importance", "history", "parallel"]),
              default="curves", show_default=True,
              help="curves: the top trials' learning curves coloured by the searched parameter; "
                   "the others: Optuna's parameter importances, optimization history, "
                   "parallel coordinates.")
@click.option("--metric", default="val_acc", show_default=True,
              help="Curves: train_loss, train_acc, val_loss, val_acc or lr, per epoch.")
@click.option("--top", type=click.IntRange(1, 100), default=8, show_default=True,
              help="Curves: how many trials (the choice and its runners-up first).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="FILE.png (an image) or FILE.html (interactive, opens offline).")
@reports_errors
def plot(study, storage, tag, kind, metric, top, out) -> None:
    """Draw a study: its top trials' curves, or one of Optuna's plots."""
    from hpsearch.results.frames import open_study
    from hpsearch.results.plots import plot_curves, plot_optuna

    stored = open_study(study, storage, tag)
    if kind == "curves":
        path = plot_curves(stored, out, metric=metric, top=top)
    else:
        path = plot_optuna(stored, kind, out)
    click.echo(f"{stored.study_name}: {kind} written to {path}")


@cli.command()
@storage_option
@tag_option
@click.option("--out", type=click.Path(dir_okay=False),
              help="HTML file to write (default: storage/report.html).")
@reports_errors
def report(storage, tag, out) -> None:
    """Write the protocol report: one self-contained HTML file with every phase's choice and
    why, its curves, eliminated and skipped phases, the test result, the configuration, the
    command that reproduces it and where the model is."""
    from hpsearch.results.report import write_report

    path = write_report(storage, tag=tag, out=out)
    click.echo(f"report written to {path} ({path.stat().st_size:,} bytes); open it in a "
               "browser (no network needed)")


@cli.command()
@storage_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (the dashboard has no authentication: keep it local, "
                   "or put an authenticating proxy in front).")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@artifacts_option
@reports_errors
def dashboard(storage, host, port, artifacts) -> None:
    """Serve optuna-dashboard on the storage, with the kept models as artifacts and each
    phase's choice written as its study's note."""
    from hpsearch.dashboard import serve

    serve(storage, host=host, port=port, artifacts=artifacts, announce=click.echo)


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
    """List every training setting: type, default, allowed values or range, then what it
    means, its unit and its source (for `base`, `space`, `--set`)."""
    defaults = config_module.TrainConfig().to_dict()
    notes = config_module.setting_notes()
    width = max(16, *(len(name) + 1 for name in defaults))
    for name, value in defaults.items():
        click.echo(f"{name:<{width}} {_setting_line(name, value)}")
        if notes.get(name):
            click.echo(f"{'':<4}{notes[name]}")


def _setting_line(name: str, value) -> str:
    """`float  default 0.001  range: 0 < lr` (or its choices, or its names and paths)."""
    kind = config_module.base_type(name).__name__
    choices = config_module.CHOICES.get(name)
    named = config_module.NAMES_OR_PATHS.get(name)
    bounds = config_module.RANGES.get(name)
    extra = f"  one of: {', '.join(choices)}" if choices else ""
    extra = f"  one of: {', '.join(named)}, or an import path" if named else extra
    extra = f"  range: {bounds.text(name)}" if bounds else extra
    return f"{kind:<6} default {value!r}{extra}"


def main() -> None:
    """Console-script entry point."""
    cli()
