"""The program a worker process of ``hpsearch run`` runs (search._process)."""

import sys

from hpsearch.search._process import main

sys.exit(main())
