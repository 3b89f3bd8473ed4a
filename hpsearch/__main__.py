"""``python -m hpsearch``: the same CLI as the ``hpsearch`` script (used to start workers)."""

from hpsearch.cli import main

main()
