"""The `tinymod` command line: thin click commands that build a config and call the library.

Heavy modules (numpy's maths, numba, matplotlib) are imported inside the commands, so
`tinymod --help` starts fast.
"""
import click

from tinymod import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tinymod")
def main():
    """tinymod: watch a hand-written RNN grok modular addition, then find the Fourier
    algorithm inside it."""
