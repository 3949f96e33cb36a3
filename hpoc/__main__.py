import sys

from hpoc.cli import main

sys.exit(main())
