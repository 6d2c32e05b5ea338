import sys

from locallearn.cli import main

sys.exit(main())
