"""The `hpsearch` command: thin commands that parse arguments and call one library function.

Expected failures print one `error: ...` line and exit 2 (bad input) or 1 (run-time failure);
Ctrl-C exits 130 after the running trial has been marked FAIL.
"""

from __future__ import annotations

import functools
import signal
import sys
import warnings

import click
import optuna

from hpsearch import config as config_module
from hpsearch import console, results, runner
from hpsearch.errors import HpsearchError
from hpsearch.storage import STORAGE_ENV

EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT

STORAGE_HELP = f"Storage URL (default: ${STORAGE_ENV}, else sqlite:///storage/hpsearch.db)."
STUDIES_DIR_HELP = "Folder of study files (default: $HPSEARCH_STUDIES_DIR, else ./studies)."


def reports_errors(command):
    """Turn hpsearch's named errors and Ctrl-C into one line and an exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except HpsearchError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo(
                "error: interrupted; the running trial was marked FAIL and no trial is left "
                "RUNNING; fix: rerun the same command to finish the budget",
                err=True,
            )
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hpsearch")
def cli() -> None:
    """Optuna-driven hyperparameter search for PyTorch, one protocol phase per study."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # we report trials ourselves
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@cli.command()
@click.option("--study", "study", required=True, help="Study name in the studies folder, or a YAML path.")
@click.option("--trials", type=click.IntRange(min=0), help="Budget: COMPLETE+PRUNED trials (default: the file's).")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Override a training setting (repeatable).")
@click.option("--device", help="cpu, cuda, cuda:N or auto (default: the study's, else auto).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Data folder (default: $HPSEARCH_DATA_DIR, else storage/data).")
@click.option("--name", help="Store the run under this study name instead of the file's.")
@click.option("--studies-dir", envvar="HPSEARCH_STUDIES_DIR", default="studies", show_default=True, help=STUDIES_DIR_HELP)
@reports_errors
def run(study, trials, storage, settings, device, data_dir, name, studies_dir) -> None:
    """Run (or resume) a study until it has its budget of trials."""
    overrides = config_module.parse_set_options(settings)
    overrides.update({k: v for k, v in (("device", device), ("data_dir", data_dir)) if v})
    signal.signal(signal.SIGTERM, _raise_interrupt)  # a killed worker cleans up like Ctrl-C
    with console.ProgressObserver() as progress:
        summary = runner.run_study(
            study, trials=trials, storage=storage, overrides=overrides, name=name,
            studies_dir=studies_dir, observer=progress,
        )
    console.print_run_summary(summary, results.load_study(summary.study_name, storage))


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@cli.command()
@click.option("--storage", help=STORAGE_HELP)
@click.option("--studies-dir", envvar="HPSEARCH_STUDIES_DIR", default="studies", show_default=True, help=STUDIES_DIR_HELP)
@reports_errors
def studies(storage, studies_dir) -> None:
    """List the study files with their phase, description, trials done and best value."""
    console.print_studies(results.overview(studies_dir, storage))


@cli.command()
@click.option("--study", "study", required=True, help="Stored study name.")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@reports_errors
def best(study, storage, as_json) -> None:
    """Show the best trial: value, parameters and resolved configuration."""
    console.print_best(results.best(study, storage), as_json)


@cli.command()
@reports_errors
def settings() -> None:
    """List every training setting with its type and default (for `base`, `space`, `--set`)."""
    for name, value in config_module.TrainConfig().to_dict().items():
        kind = config_module.base_type(name).__name__
        choices = config_module.CHOICES.get(name)
        extra = f"  one of: {', '.join(choices)}" if choices else ""
        click.echo(f"{name:<16} {kind:<6} default {value!r}{extra}")


def main() -> None:
    """Console-script entry point."""
    cli()
