"""``python -m hpsearch``: the same CLI as the ``hpsearch`` script."""

from hpsearch.cli import main

main()
