"""Record the run that the verdict calibration tests resample (tests/data/recorded-run.json).

A real moodle_load.py run against the simulated site with its realistic page times
(FACTS.md medians, lognormal jitter): 120 s at 600 RPM, 20 blocks.  Re-record with

    .venv/bin/python tests/data/record_calibration.py
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(HERE))

from loadhelp import write_config  # noqa: E402

import moodle_load  # noqa: E402
from sim.moodledb import SiteData  # noqa: E402
from sim.server import SimServer  # noqa: E402
from sim.site import MoodleSite  # noqa: E402
from sim.sitesettings import SiteSettings  # noqa: E402
from sim.siteusers import MemoryUsers  # noqa: E402

if __name__ == "__main__":
    site = MoodleSite(MemoryUsers.testsite(30, "Passw0rd!"), SiteData.testsite(), SiteSettings())
    with SimServer(site) as server:
        config = write_config(os.path.join(HERE, "calibration-config.json"), server.url, users=30)
        code = moodle_load.main(["--config", config, "--rpm", "600", "--duration", "120", "--warmup", "5",
                                 "--concurrency", "20", "--progress", "30",
                                 "--output", os.path.join(HERE, "recorded-run.json")])
        os.unlink(config)
    sys.exit(code)
