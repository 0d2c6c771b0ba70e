"""python -m tools.site: build the course's static website (see tools/site/build.py)."""
import sys

from .build import main

sys.exit(main())
