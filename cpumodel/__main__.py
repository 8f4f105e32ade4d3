import sys

from cpumodel.cli import main

sys.exit(main())
