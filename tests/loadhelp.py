"""Helpers for running moodle_load.py against simulated sites."""

from __future__ import annotations

import json
import socket

import moodle_load

PASSWORD = "Passw0rd!"


def free_port() -> int:
    """A loopback port nothing listens on (just now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(path, base_url: str, users: int = 5, urls=None, parameters=None, password: str = PASSWORD,
                 first_user: int = 1) -> str:
    config = {
        "base_url": base_url,
        "login_path": "/login/index.php",
        "users": [{"username": f"tool_generator_{n:06d}", "password": password}
                  for n in range(first_user, first_user + users)],
        "parameters": parameters if parameters is not None else {
            "courseid": {"values": [10, 11, 12, 13]}, "cmid": {"values": [104, 168, 232, 296]},
            "userid": {"min": 3, "max": 22}},
        "urls": urls if urls is not None else [
            {"path": "/my/", "name": "dashboard"},
            {"path": "/course/view.php?id={courseid}", "name": "course"},
            {"path": "/mod/forum/view.php?id={cmid}", "name": "forum"},
            {"path": "/user/profile.php?id={userid}", "name": "profile"}],
    }
    with open(path, "w") as handle:
        json.dump(config, handle)
    return str(path)


def run_load(config_path: str, *extra, rpm: float = 600, duration: float = 2, output=None) -> int:
    args = ["--config", config_path, "--rpm", str(rpm), "--duration", str(duration), "--progress", "0", *extra]
    if output is not None:
        args += ["--output", str(output)]
    return moodle_load.main(args)


def read(path) -> dict:
    with open(path) as handle:
        return json.load(handle)
