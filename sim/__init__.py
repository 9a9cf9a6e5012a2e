"""Test fixtures made real: a simulated Moodle site and a throwaway PostgreSQL server."""
