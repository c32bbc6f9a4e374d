"""Who may use a shared server: keys, Host names, Origins (the pure rules) and key sources."""

from __future__ import annotations

import os
import stat

import pytest

from jisu.server.access import AccessPolicy, split_host_port
from jisu.server.keys import GENERATED_KEY_FILE, KeyConfigError, collect_keys, generated_key, read_key_file


@pytest.mark.parametrize("value,expected", [
    ("Example.COM:8080", ("example.com", 8080)),
    ("localhost", ("localhost", None)),
    ("[::1]:8080", ("::1", 8080)),
    ("[::1]", ("::1", None)),
    ("::1", ("::1", None)),
    ("host.:80", ("host", 80)),
])
def test_split_host_port(value, expected):
    assert split_host_port(value) == expected


POLICY = AccessPolicy.build(allowed_hosts=["jisu.office.lan"])


@pytest.mark.parametrize("host,allowed", [
    ("127.0.0.1:8080", True),
    ("localhost:8080", True),
    ("app.localhost", True),
    ("[::1]:8080", True),
    ("192.168.1.20:8080", True),  # an IP literal cannot be rebound: the browser's origin is the IP
    ("[fe80::1]:8080", True),
    ("jisu.office.lan:8080", True),  # --allowed-host
    ("JISU.office.lan", True),
    ("evil.example:8080", False),  # DNS rebinding: a foreign name pointed at us
    ("localhost.evil.example", False),
    ("127.0.0.1.evil.example", False),
    ("", False),
    (None, False),
])
def test_host_check_refuses_foreign_names(host, allowed):
    assert POLICY.host_allowed(host) is allowed


def test_machine_names_are_allowed_hosts():
    policy = AccessPolicy.build()
    assert policy.machine_names, "the hostname is one of the names colleagues use"
    assert all(policy.host_allowed(f"{name}:8080") for name in policy.machine_names)


def test_star_turns_the_host_check_off():
    assert AccessPolicy.build(allowed_hosts=["*"]).host_allowed("anything.example")


def test_bound_address_is_allowed():
    assert AccessPolicy.build(bound_host="jisu-box").host_allowed("jisu-box:8080")


ORIGINS = AccessPolicy.build(cors_origins=["https://app.example", "http://127.0.0.2:9000/"])


@pytest.mark.parametrize("origin,host,allowed", [
    (None, "127.0.0.1:8080", True),  # not a browser page (curl, SDKs)
    ("http://127.0.0.1:8080", "127.0.0.1:8080", True),  # our own page
    ("http://localhost:8080", "127.0.0.1:8080", True),  # our page under another loopback name
    ("http://192.168.1.20:8080", "192.168.1.20:8080", True),  # our page on the LAN
    ("http://127.0.0.1:9999", "127.0.0.1:8080", False),  # another local server's page
    ("http://127.0.0.2:8081", "127.0.0.1:8080", False),
    ("https://evil.example", "127.0.0.1:8080", False),
    ("http://evil.example:8080", "evil.example:8080", True),  # same origin; the Host check stops it
    ("null", "127.0.0.1:8080", False),  # sandboxed frames, file:// pages
    ("https://app.example", "127.0.0.1:8080", True),  # --cors-origin
    ("https://APP.example/", "127.0.0.1:8080", True),
    ("http://127.0.0.2:9000", "127.0.0.1:8080", True),
    ("http://app.example", "127.0.0.1:8080", False),  # scheme matters
    ("http://127.0.0.1", "127.0.0.1:80", True),  # default ports
    ("https://127.0.0.1", "127.0.0.1:80", False),
])
def test_origin_check(origin, host, allowed):
    assert ORIGINS.origin_allowed(origin, host) is allowed


def test_keys_name_users_and_compare_exactly():
    policy = AccessPolicy.build({"alice-key-123": "alice", "bob-key-4567": "bob"})
    assert policy.needs_key
    assert policy.user_for_key("alice-key-123") == "alice"
    assert policy.user_for_key("bob-key-4567") == "bob"
    for wrong in ("alice-key-12", "alice-key-1234", "ALICE-KEY-123", "", None):
        assert policy.user_for_key(wrong) is None, wrong
    assert policy.user_for_authorization("Bearer alice-key-123") == "alice"
    assert policy.user_for_authorization("bearer   bob-key-4567 ") == "bob"
    for header in ("alice-key-123", "Basic alice-key-123", "Bearer", "", None):
        assert policy.user_for_authorization(header) is None, header


def test_key_file(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# team keys\nalice:alice-key-123\n\n  shared-key-999  \nbob: bob-key-4567\n")
    assert read_key_file(path) == {"alice-key-123": "alice", "shared-key-999": "local", "bob-key-4567": "bob"}


@pytest.mark.parametrize("content,message", [
    ("", "holds no key"),
    ("# only a comment\n", "holds no key"),
    ("alice:short\n", "line 1: a key must have at least 8"),
    ("ok-key-12345\n:nameless-key-1\n", "line 2: the user name"),
    ("alice:has space inside\n", "spaces"),
])
def test_bad_key_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "keys"
    path.write_text(content)
    with pytest.raises(KeyConfigError, match=message):
        read_key_file(path)


def test_missing_key_file(tmp_path):
    with pytest.raises(KeyConfigError, match="cannot read the key file"):
        read_key_file(tmp_path / "nope")


def test_keys_from_every_source(tmp_path):
    path = tmp_path / "keys"
    path.write_text("carol:carol-key-1\n")
    keys = collect_keys(("alice:alice-key-1",), (path,), {"JISU_API_KEY": "env-key-12345"})
    assert keys == {"alice-key-1": "alice", "carol-key-1": "carol", "env-key-12345": "local"}
    assert collect_keys((), (), {}) == {}


def test_generated_key_is_private_and_survives_restarts(tmp_path):
    key, made = generated_key(tmp_path / "home")
    assert made and len(key) >= 32
    path = tmp_path / "home" / GENERATED_KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, "only the owner may read the key"
    again, made_again = generated_key(tmp_path / "home")
    assert (again, made_again) == (key, False), "a restart keeps the key, so links people saved still work"
    assert not list((tmp_path / "home").glob("*.tmp"))
