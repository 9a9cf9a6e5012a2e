"""The database settings and wwwroot of a Moodle site, read from its config.php.

With ``php`` on the PATH the file is run by PHP the way Moodle's light scripts load it
(CLI_SCRIPT and ABORT_AFTER_CONFIG defined), stopping before its ``require_once`` of
lib/setup.php (public/lib/setup.php since Moodle 5.1, config.php staying at the
top): what config.php computes (getenv(), concatenations, includes) is honoured,
and nothing of Moodle beyond config.php runs.  Without PHP, plain assignments
(``$CFG->dbname = 'moodle';`` and the ``dboptions`` array as Moodle's installer writes
them with var_export) are read as text and nothing is executed; a setting given by code
is named so the user can give it by flag instead."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from moodleload.database.families import FAMILIES, family_of
from moodleload.database.family import SettingName, Settings
from moodleload.database.mysql import client_option_file
from moodleload.exits import SETUP_DONE, SETUP_USAGE, UsageError

SETTINGS = ("dbtype", "dbhost", "dbname", "dbuser", "dbpass", "prefix", "wwwroot")
OPTIONS = ("dbport", "dbsocket")
PHP_TIMEOUT_SECONDS = 20

# Runs config.php without its last line's bootstrap and prints the settings as JSON on
# standard output (a pipe: the password never reaches argv or a file).
PHP_READER = r"""
define('CLI_SCRIPT', true);
define('ABORT_AFTER_CONFIG', true);
$moodleload_file = $argv[1];
$moodleload_code = file_get_contents($moodleload_file);
if ($moodleload_code === false) { fwrite(STDERR, "cannot read the file\n"); exit(3); }
$moodleload_code = preg_replace(
    '~(require|include)(_once)?\s*\(?\s*(__DIR__|dirname\s*\(\s*__FILE__\s*\))\s*\.\s*[\'"]/(public/)?lib/setup\.php[\'"]\s*\)?\s*;~',
    '', $moodleload_code, -1, $moodleload_found);
$moodleload_dir = dirname(realpath($moodleload_file));
$moodleload_code = str_replace(array('__DIR__', 'dirname(__FILE__)'), var_export($moodleload_dir, true),
    $moodleload_code);
chdir($moodleload_dir);
ob_start();
eval('?>' . $moodleload_code);
ob_end_clean();
if (!isset($CFG) || !is_object($CFG)) { fwrite(STDERR, "it does not set \$CFG\n"); exit(4); }
$moodleload_out = array();
foreach (array('dbtype', 'dbhost', 'dbname', 'dbuser', 'dbpass', 'prefix', 'wwwroot') as $k) {
    if (isset($CFG->$k)) { $moodleload_out[$k] = is_scalar($CFG->$k) ? (string)$CFG->$k : null; }
}
if (isset($CFG->dboptions) && is_array($CFG->dboptions)) {
    foreach (array('dbport', 'dbsocket') as $k) {
        if (isset($CFG->dboptions[$k]) && is_scalar($CFG->dboptions[$k])) {
            $moodleload_out[$k] = (string)$CFG->dboptions[$k];
        }
    }
}
echo json_encode($moodleload_out);
"""


SECRET_SETTINGS = ("dbpass",)  # never quoted in a message, not even in part


@dataclass
class MoodleConfig:
    """What config.php says, as strings; ``how`` says how it was read, for --dry-run."""

    path: str
    how: str
    values: dict[str, Any] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)  # setting -> why it could not be read as text

    def get(self, name: str) -> str | None:
        """The value, None where config.php does not set it (or sets it empty); a UsageError
        where it is set by code that could not be read without PHP."""
        if name in self.unreadable:
            # The code is quoted to help find it, except where it may hold the secret itself.
            code = "" if name in SECRET_SETTINGS else f" ({self.unreadable[name]})"
            raise UsageError(f"{self.path} sets {name} by code{code}, which is not run without "
                             f"php: install php-cli, or give the value by flag")
        value = self.values.get(name)
        return value if value not in (None, "") else None


# ----------------------------------------------------------------------------- without PHP

_ASSIGNMENT = re.compile(r"\$CFG\s*->\s*(\w+)\s*=\s*", re.S)
_SINGLE = re.compile(r"'((?:[^'\\]|\\.)*)'", re.S)
_DOUBLE = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_DOUBLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "v": "\v", "e": "\x1b", "f": "\f", "\\": "\\", "$": "$",
                   '"': '"', "0": "\0"}


def strip_comments(text: str) -> str:
    """PHP source with comments blanked out and strings kept, so commented-out settings
    (config-dist.php is full of them) are not read."""
    result = []
    position = 0
    length = len(text)
    while position < length:
        char = text[position]
        if char in "'\"":
            match = (_SINGLE if char == "'" else _DOUBLE).match(text, position)
            end = match.end() if match else length
            result.append(text[position:end])
            position = end
        elif text.startswith("//", position) or char == "#" and not text.startswith("#[", position):
            end = text.find("\n", position)
            position = length if end < 0 else end
        elif text.startswith("/*", position):
            end = text.find("*/", position + 2)
            position = length if end < 0 else end + 2
            result.append(" ")
        else:
            result.append(char)
            position += 1
    return "".join(result)


def _literal(text: str, position: int) -> tuple[str | None, int] | None:
    """(value, end) of the PHP literal at ``position``, or None if it is not a plain one."""
    if text.startswith("'", position):
        match = _SINGLE.match(text, position)
        if match:
            return re.sub(r"\\([\\'])", r"\1", match.group(1)), match.end()
    elif text.startswith('"', position):
        match = _DOUBLE.match(text, position)
        if match and not re.search(r"(?<!\\)\$", match.group(1)):  # "$var" interpolates: code
            body = re.sub(r"\\(.)", lambda m: _DOUBLE_ESCAPES.get(m.group(1), "\\" + m.group(1)), match.group(1))
            return body, match.end()
    else:
        match = _NUMBER.match(text, position)
        if match:
            return match.group(0), match.end()
        for word in ("true", "false", "null"):
            if text[position:position + len(word)].lower() == word:
                return {"true": "1", "false": "", "null": None}[word], position + len(word)
    return None


def _statement_end(text: str, position: int) -> int:
    end = text.find(";", position)
    return len(text) if end < 0 else end


def _array(text: str, position: int) -> tuple[dict[str, str | None], int] | None:
    """({key: value}, end) of a literal ``array(...)`` or ``[...]`` of 'key' => literal pairs."""
    match = re.compile(r"array\s*\(|\[", re.I).match(text, position)
    if not match:
        return None
    closing = ")" if match.group(0) != "[" else "]"
    values: dict[str, str | None] = {}
    position = match.end()
    pair = re.compile(r"\s*(?:'([^'\\]*)'|\"([^\"\\$]*)\")\s*=>\s*", re.S)
    while True:
        position = len(text) - len(text[position:].lstrip())
        if text.startswith(closing, position):
            return values, position + 1
        key = pair.match(text, position)
        if not key:
            return None
        literal = _literal(text, key.end())
        if literal is None:
            return None
        values[key.group(1) if key.group(1) is not None else key.group(2)] = literal[0]
        position = len(text) - len(text[literal[1]:].lstrip())
        if text.startswith(",", position):
            position += 1


def parse_plain(text: str, path: str = "config.php") -> MoodleConfig:
    """The settings a config.php assigns with plain literals; the last assignment wins, as
    when PHP runs it.  Nothing is executed."""
    source = strip_comments(text)
    config = MoodleConfig(path, "read as text (php not found), nothing executed")
    for match in _ASSIGNMENT.finditer(source):
        name, start = match.group(1), match.end()
        if name == "dboptions":
            parsed = _array(source, start)
            if parsed is None:
                for option in OPTIONS:
                    config.values.pop(option, None)
                    config.unreadable[option] = "dboptions is not a plain array"
                continue
            for option in OPTIONS:
                config.unreadable.pop(option, None)
                config.values[option] = parsed[0].get(option)
            continue
        if name not in SETTINGS:
            continue
        literal = _literal(source, start)
        end = _statement_end(source, start)
        if literal is not None and source[literal[1]:end].strip() == "":
            config.values[name] = literal[0]
            config.unreadable.pop(name, None)
        else:
            config.values.pop(name, None)
            config.unreadable[name] = " ".join(source[start:end].split())[:60]
    return config


# ----------------------------------------------------------------------------- with PHP

def read_with_php(path: str, php: str) -> MoodleConfig:
    try:
        result = subprocess.run([php, "-d", "display_errors=stderr", "-d", "error_reporting=0", "-r", PHP_READER,
                                 path], capture_output=True, text=True, timeout=PHP_TIMEOUT_SECONDS,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise UsageError(f"php did not finish reading {path} within {PHP_TIMEOUT_SECONDS} s") from None
    if result.returncode != 0 or not result.stdout.strip():
        detail = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1][:200]
        raise UsageError(f"php could not read {path}: {detail}")
    try:
        values = json.loads(result.stdout)
    except ValueError:
        raise UsageError(f"php could not read {path}: it printed something else than settings") from None
    if not isinstance(values, dict):
        raise UsageError(f"php could not read {path}")
    return MoodleConfig(path, f"run by {php} up to its lib/setup.php (ABORT_AFTER_CONFIG)",
                        {key: value for key, value in values.items() if isinstance(value, str)})


def read_moodle_config(path: str, php: str | None = "auto") -> MoodleConfig:
    """config.php's settings: by PHP when ``php`` is found (``"auto"``: on the PATH), else as
    plain text."""
    if not os.path.isfile(path):
        raise UsageError(f"--moodle-config {path}: no such file (give the path of the site's config.php)")
    if not os.access(path, os.R_OK):
        raise UsageError(f"--moodle-config {path}: not readable by this user (run as the web server's user, "
                         f"or give the database settings by flag)")
    if php == "auto":
        php = shutil.which("php")
    if php:
        config = read_with_php(path, php)
    else:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                config = parse_plain(handle.read(), path)
        except OSError as error:
            raise UsageError(f"--moodle-config {path}: {error.strerror}") from None
    if not config.values and not config.unreadable:
        raise UsageError(f"--moodle-config {path} sets no $CFG->db* settings: is it Moodle's config.php?")
    return config


# The settings config.php gives every family by the same $CFG name (host and socket depend).
CONFIG_PHP_SETTINGS: tuple[tuple[SettingName, str], ...] = (("name", "dbname"), ("user", "dbuser"),
                                                            ("password", "dbpass"), ("port", "dbport"))


def offer_moodle_settings(moodle: MoodleConfig, family: str, settings: Settings) -> None:
    """Offer config.php's connection settings the way Moodle's own drivers read them: a
    dbsocket with a local dbhost means the unix socket (for PostgreSQL a value with '/' is
    the socket's directory, any other libpq's default one; for MariaDB/MySQL the socket
    file), else dbhost and dbport over TCP."""
    for name, key in CONFIG_PHP_SETTINGS:
        settings.offer(name, moodle.get(key), "config.php")
    host, socket = moodle.get("dbhost"), moodle.get("dbsocket")
    if socket and host in (None, "localhost", "127.0.0.1"):
        if "/" in socket:
            settings.offer(FAMILIES[family].socket_setting, socket, "config.php")
    else:
        settings.offer("host", host, "config.php")


# ----------------------------------------------------------------------------- for shell scripts

def client_settings(path: str) -> tuple[str, Settings]:
    moodle = read_moodle_config(path)
    dbtype = moodle.get("dbtype")
    if dbtype is None:
        raise UsageError(f"{path} does not set $CFG->dbtype")
    family = family_of(dbtype)
    settings = Settings()
    offer_moodle_settings(moodle, family, settings)
    return family, settings


def shell_assignments(family: str, settings: Settings) -> str:
    """``DB_FAMILY`` and ``DB_NAME``, and the variables the family's client tools read (for
    PostgreSQL the PG* ones); every value shell-quoted.  MariaDB/MySQL's password goes by
    --my-cnf instead."""
    lines = [f"DB_FAMILY={family}", f"DB_NAME={shlex.quote(settings.name or '')}"]
    for name, variable in FAMILIES[family].client_variables:
        value = settings.value(name)
        if value is not None:
            lines.append(f"export {variable}={shlex.quote(str(value))}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m moodleload.database.moodleconfig", allow_abbrev=False,
                                     description="A site's database settings from its config.php, for scripts "
                                                 "(examples/bisect-step.sh restores snapshots with them).")
    form = parser.add_mutually_exclusive_group(required=True)
    form.add_argument("--shell", action="store_true", help="DB_FAMILY, DB_NAME (and PG* exports) for eval")
    form.add_argument("--my-cnf", action="store_true", help="a [client] option file for mysql/mariadb tools")
    parser.add_argument("config_php")
    args = parser.parse_args(argv)
    try:
        family, settings = client_settings(args.config_php)
    except UsageError as error:
        print(f"[ERROR] {error}", file=sys.stderr)
        return SETUP_USAGE
    sys.stdout.write(shell_assignments(family, settings) if args.shell else client_option_file(settings))
    return SETUP_DONE


if __name__ == "__main__":
    sys.exit(main())
