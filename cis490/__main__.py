import sys

from cis490.cli import main

sys.exit(main())
