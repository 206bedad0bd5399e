import sys

from rnncore.cli import main

sys.exit(main())
