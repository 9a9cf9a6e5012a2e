"""The Moodle site, as a browser meets it.

Rooms: ``httpclient`` (the httptools client, its limits and errors), ``aioclient`` (the
same interface on aiohttp), ``clients`` (which of the two a run uses), ``forms`` (Moodle's
HTML forms, read and filled, pure), ``moodle`` (the logintoken login, sessions, the
performance footer, what a failure is), ``walk`` (where a session's user is in a journey),
``moodletree`` (which Moodle a checkout is, across the up-to-5.0, 5.1.x and later layouts).
"""
