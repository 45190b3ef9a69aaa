import sys

from mlpipe.cli import main

sys.exit(main())
