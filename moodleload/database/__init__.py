"""The database side: the site's database, touched only as asked.

Rooms: ``moodleconfig`` (connection settings read from Moodle's config.php), ``connection``
(the database flags, config.php and the family's defaults settled into one family's
settings), ``family`` (the ``DatabaseFamily`` protocol every family satisfies, its settings
and their origins), ``postgres`` and ``mysql`` (the two families: drivers, defaults, SQL,
errors, statement statistics, restores), ``families`` (their registry by name and by
Moodle's dbtype), ``accounts`` (picking test
users and setting their password in one transaction), ``passwords``
(``set_moodle_passwords.py``), ``testconfig`` and ``testpassword`` (the config.json it writes
and the password it is given, checked).
"""
