"""The Moodle load toolkit, in wings by job; each wing's ``__init__`` names its rooms.

Wings, lower layers first (a wing imports only from wings below it and the shared modules;
tests/test_architecture.py holds it):

- ``database``: the site's database, touched only as asked (set_moodle_passwords.py).
- ``site``: the Moodle site as a browser meets it: HTTP, forms, login, the Moodle tree.
- ``steps``: the kinds of journey step (a page, a form submitted, a web-service call, the
  logout), each one class: its fields, its parser, its rows, its requests.
- ``results``: the results document, its typed model, checks, merge and summary.
- ``load``: one run: the plan, the scheduler, journeys, recording, what runs beside it.
- ``judging``: comparisons of runs, the spread, sizing, the verdict and its exit status.
- ``reports``: the console, HTML, CSV and JUnit views of results and comparisons.
- ``bisect``: one git bisect step (``python -m moodleload.bisect``): the site prepared for the
  checked-out commit, runs pooled until decided, the baseline, the culprit confirmed.
- ``scan``: a range of commits measured, its steps found and bisected.

Shared modules at the top, importing no wing: ``config`` (config.json), ``siteurl``,
``shards`` (``--shard`` and ``--start-at``), ``footer`` (what Moodle's performance footer
says, and its numbers' names), ``console``, ``files``, ``exits`` (every exit
status), ``needs`` (optional packages).  Entry modules: ``cli`` (moodle_load.py's main),
``options`` (its flags), ``build`` (zipapps).  ``moodle_load.py`` and
``set_moodle_passwords.py`` at the top of the repository are thin entry points into ``cli``
and ``database.passwords``.  Importing the package has no side effects.
"""

__version__ = "0.6.0"
