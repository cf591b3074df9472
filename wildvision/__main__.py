import sys

from wildvision.cli import main

sys.exit(main())
