"""The Moodle load toolkit, one module per job in the order data flows through a run:

config -> moodletree -> plan -> histogram -> httpclient -> forms -> moodle -> journeys -> recording
-> machine -> scheduler -> results -> work -> compare -> runs -> sizing / pairs -> verdict -> views
-> textreport / htmlreport -> cli;
and for set_moodle_passwords.py: moodleconfig -> databases -> accounts -> passwords.

``moodle_load.py`` and ``set_moodle_passwords.py`` at the top of the repository are thin
entry points into ``cli`` and ``passwords``.  Importing the package has no side effects.
"""

__version__ = "0.6.0"
