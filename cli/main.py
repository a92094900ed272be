"""``witnp``: the click group. Parses and validates, then calls the library; never the other way round."""
import click

import witnp


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(witnp.__version__, prog_name="witnp")
def main():
    """Train and deploy neural networks for analog compute-in-memory chips (WTM2101 class)."""


if __name__ == "__main__":  # pragma: no cover
    main()
