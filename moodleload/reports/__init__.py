"""Reports: views of results and comparisons; nothing here measures or judges.

Rooms: ``views`` (what every report shows, as plain values), ``text`` (the console
report), ``html`` (the one-file HTML report), ``charts`` (its SVG charts), ``exporters``
(the files a run can write besides its results: CSV, JUnit, HTML).
"""
