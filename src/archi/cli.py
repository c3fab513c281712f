"""``archi``: the command line (also ``python -m archi``).

    archi run VISIT OUT_DIR [--method shape --val_range "[10, 24]" ...]
    archi simulate OUT_DIR [--n-frames N ...]      (the same as ``archi-simulate``)
    archi --version

``archi run`` is :func:`archi.pipeline.run` on one visit (a folder or a DACE ``.tgz``): every
photometry option (config/config.yaml's ``photometry:`` keys) is ``--name value``, the value
read as YAML (``--decontaminate false``, ``--val_range "[10, 24]"``), ``-`` or ``_`` alike;
``--options file.yaml`` reads them from a file (flat keys, or config/config.yaml's
``photometry:`` and ``outputs:`` sections), the command line winning. A bad option is one
line and exit status 2; a visit that cannot be run, one line and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from archi import __version__
from archi.errors import ArchiError, ConfigError, one_line
from archi.options import KEYS, Options

RUN_SETTINGS = {
    "layout": ("auto", "folder layout: auto, drp or cheopsim"),
    "optimize": (True, "search each star's mask factor (false: take them from factors_file)"),
    "factors_file": (None, "optimised factors written by an earlier run (with optimize: false)"),
    "export_text": (True, "write lightcurves.txt in archi's text layout"),
    "show_results": (True, "plot every star's light curve and the field"),
    "debug": (True, "plot the target against the DRP light curve"),
    "save_gif": (False, "write star_tracking.gif"),
    "pycheops_files": (False, "per star, a file pycheops' Dataset.from_pipe_file loads"),
    "workers": (1, "processes sharing the frames of the costly passes"),
}
"""Settings of :func:`archi.pipeline.run` besides the photometry options: default, meaning."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def option_names(key: str) -> list[str]:
    """``--key`` and, when it has underscores, ``--key-with-dashes``."""
    return sorted({f"--{key}", f"--{key.replace('_', '-')}"}, reverse=True)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="archi", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"archi {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{run,simulate}",
                                     parser_class=OneLineParser)
    run = commands.add_parser("run", help="light curves of every star of one visit",
                              description="Light curves of every star of one visit "
                                          "(archi.pipeline.run); values are YAML.")
    run.add_argument("visit", help="visit folder (DRP or CHEOPSim layout) or DACE .tgz")
    run.add_argument("out_dir", help="folder the light curves, plots and run info go to")
    run.add_argument("--options", dest="options_file", metavar="FILE",
                     help="YAML file of photometry options (flat or under photometry:)")
    for key, (default, meaning) in RUN_SETTINGS.items():
        run.add_argument(*option_names(key), dest=key, metavar="VALUE",
                         help=f"{meaning} (default {default})")
    photometry = run.add_argument_group("photometry options (config/config.yaml)")
    for key in KEYS:
        photometry.add_argument(*option_names(key), dest=key, metavar="VALUE")
    commands.add_parser("simulate", help="write a simulated visit (archi-simulate)",
                        add_help=False)
    return parser


def yaml_value(key: str, text: str) -> Any:
    """A command-line value as YAML; ConfigError naming the option when it is not."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--{key} {text!r} is not a YAML value ({one_line(exc)})") from None


def options_from_file(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(photometry options, run settings) of a YAML file: its ``photometry:`` section (or
    the whole file when it has none) and its ``outputs:`` section (as config/config.yaml)."""
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read options ({one_line(exc)})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: options must be a mapping of option: value")
    if "photometry" not in values:
        return values, {}
    sections = {name: values.get(name) or {} for name in ("photometry", "outputs")}
    for name, section in sections.items():
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: {name}: must be a mapping of option: value")
    unknown = sorted(set(sections["outputs"]) - set(RUN_SETTINGS))
    if unknown:
        raise ConfigError(f"{path}: unknown outputs option(s) {', '.join(unknown)}")
    return dict(sections["photometry"]), dict(sections["outputs"])


def run_arguments(args: argparse.Namespace) -> tuple[Options, dict[str, Any]]:
    """The Options and the other :func:`archi.pipeline.run` settings given on the command line
    (ConfigError: one line naming the option)."""
    given, file_settings = options_from_file(args.options_file) if args.options_file else ({}, {})
    source = args.options_file or "command line"
    for key in KEYS:
        if getattr(args, key) is not None:
            given[key] = yaml_value(key, getattr(args, key))
            source = "command line"
    options = Options.from_mapping(given, source=source)
    settings = {}
    for key, (default, _) in RUN_SETTINGS.items():
        text = getattr(args, key)
        value = file_settings.get(key, default) if text is None else yaml_value(key, text)
        if value is not default and default is not None and type(value) is not type(default):
            where = f"--{key} {text!r}" if text is not None else f"{args.options_file}: {key}"
            raise ConfigError(f"{where} must be a {type(default).__name__}")
        settings[key] = value
    return options, settings


def run_command(args: argparse.Namespace) -> int:
    try:
        options, settings = run_arguments(args)
    except ConfigError as exc:
        print(f"archi run: error: {one_line(exc)}", file=sys.stderr)
        return 2
    from archi import pipeline  # heavy imports only once the options are valid

    start = time.perf_counter()
    try:
        outputs = pipeline.run(args.visit, options, args.out_dir, **settings)
    except (ArchiError, OSError) as exc:
        print(f"archi run: error: {one_line(exc)}", file=sys.stderr)
        return 1
    print(f"light curves in {time.perf_counter() - start:.1f} s -> {outputs.lightcurves_fits}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "simulate":  # its own parser, the same as archi-simulate's
        from archi.simulate import cli as simulate_cli

        return simulate_cli.main(argv[1:], prog="archi simulate")
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 2
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
