"""The database side: the site's database, touched only as asked.

Rooms: ``moodleconfig`` (connection settings read from Moodle's config.php),
``families`` (PostgreSQL and MariaDB/MySQL behind the ``DatabaseFamily`` protocol: drivers,
defaults, SQL, errors), ``statistics`` (each family's statement statistics, read only),
``accounts`` (picking test users and setting their password in one transaction),
``passwords`` (``set_moodle_passwords.py``), ``testconfig`` and ``testpassword`` (the
config.json it writes and the password it is given, checked).
"""
