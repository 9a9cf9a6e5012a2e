"""``python -m moodleload.bisect``: one bisect step (see ``moodleload.bisect.step``)."""

import sys

from moodleload.bisect.step import main

sys.exit(main())
