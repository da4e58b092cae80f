"""``python -m vareff`` -> the command line."""
import sys

from vareff.cli import main

sys.exit(main())
