"""Jinja tests for the shape of the roles' inputs.

    app_allowed_hosts is list_of_strings
    app_root is absolute_path
    app_jwt_keyring_file is absolute_file_path
    postgresql_app_user is sql_name
    app_user is own_account
    app_root is own_directory
    backup_copy_writable_paths | reject("writable_directory")
    backup_dir is apart_from([app_root, app_media_root])
    app_media_root is within(app_root)

A list written as one value (`app_allowed_hosts: api.example.com` in YAML,
or `-e app_allowed_hosts=api.example.com`) arrives as a string, and Jinja
walks a string character by character: every letter passes a per-item check
such as a host-name pattern, and `join(",")` then spells the name out
letter by letter into the host's configuration. argument_specs' `type: list`
does not catch it either: it splits a string on commas for its own check and
leaves the variable a string.

Paths on the hosts go unquoted into systemd units (ReadWritePaths= splits
at spaces) and scripts, so a path with whitespace is refused too.

The app's account and the directories the roles create are made the app's
(chown, chmod): given `root`, `www-data` or `/`, `/etc`, `/var/lib`, a run
would rewrite that account (root's shell became nologin) or hand a system
directory to the app or lock others out of it. Names and directories the
system or this stack's packages already use are refused; the lists below
are Debian's fixed accounts (base-passwd) and the directories of the
filesystem hierarchy that hold other software's files.

A path a root service may write to (the backup's copy command, which also
reaches the network) is a hole in its sandbox: given `/`, `/etc` or a
directory inside `/usr`, the command could rewrite the system. Such paths
must be directories of their own (as above) and outside the trees that hold
the system's programs, configuration, runtime state and the database's
files.

Two roles (or two parts of one) that each own a directory must not be
given the same one, or one inside the other: each run would set its owner
and mode back and forth, and a media directory (the app user's, writable
by the app) set to the app root or the releases would let the app rewrite
its own code.

The app's database and role are PostgreSQL names the roles create, own and
lock down (NOSUPERUSER, CONNECT revoked from others): one of PostgreSQL's
own (the `postgres` superuser or database, a template database) would have
the run take the cluster's administration apart, and a reserved one
(`pg_...`, `public`) fails mid-run. Both are refused up front.

Loaded like network.py, from beside the playbooks and through ansible.cfg.
"""
import os.path
import re
from collections.abc import Sequence

ACCOUNT_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
SYSTEM_ACCOUNTS = frozenset({
    # base-passwd's users and groups
    "root", "daemon", "bin", "sys", "adm", "tty", "disk", "lp", "mail", "news",
    "uucp", "man", "proxy", "kmem", "dialout", "fax", "voice", "cdrom",
    "floppy", "tape", "sudo", "audio", "dip", "www-data", "backup", "operator",
    "list", "irc", "src", "gnats", "shadow", "utmp", "video", "sasl",
    "plugdev", "staff", "games", "users", "nogroup", "nobody", "sync",
    # made by packages this stack installs
    "_apt", "sshd", "messagebus", "systemd-journal", "systemd-network",
    "systemd-resolve", "systemd-timesync", "_chrony", "postgres", "ssl-cert",
    "crontab", "input", "kvm", "render", "netdev",
})
SYSTEM_DIRECTORIES = frozenset(
    ["/"]
    + [f"/{d}" for d in (
        "bin boot dev etc home lib lib32 lib64 libx32 media mnt opt proc root "
        "run sbin srv sys tmp usr var").split()]
    + [f"/usr/{d}" for d in "bin games include lib lib64 libexec local sbin share src".split()]
    + [f"/usr/local/{d}" for d in "bin etc games include lib man sbin share src".split()]
    + [f"/var/{d}" for d in "backups cache lib local lock log mail opt run spool tmp www".split()]
    + [f"/etc/{d}" for d in (
        "apt cron.d default letsencrypt logrotate.d nginx pam.d postgresql "
        "profile.d security ssh ssl sudoers.d systemd").split()]
    + [f"/var/lib/{d}" for d in "apt dpkg nginx postgresql systemd".split()]
    + [f"/var/log/{d}" for d in "journal nginx postgresql".split()]
    + ["/run/postgresql", "/run/systemd"]
)

# Trees a path a service is let write to stays out of, at any depth: the
# system's programs, configuration and runtime state, and the database's files.
SYSTEM_TREES = (
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32",
    "/proc", "/run", "/sbin", "/sys", "/usr", "/var/lib/postgresql",
)

SQL_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# What initdb creates, and what CREATE ROLE refuses as reserved.
POSTGRESQL_OWN_NAMES = frozenset({
    "postgres", "template0", "template1",
    "public", "none", "current_role", "current_user", "session_user",
})


def list_of_strings(value):
    """A list (or tuple) whose every item is text: not a string, a mapping or
    a number, and no item a number, list or mapping. May be empty."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return False
    return all(isinstance(item, str) for item in value)


def absolute_path(value):
    """Text starting with a slash, with no whitespace in it."""
    return isinstance(value, str) and value.startswith("/") and not any(c.isspace() for c in value)


def absolute_file_path(value):
    """An absolute path that can name a file: not "/", not ending in a slash."""
    return absolute_path(value) and len(value) > 1 and not value.endswith("/")


def account_name(value):
    """A POSIX user or group name, as Debian's adduser accepts it."""
    return isinstance(value, str) and ACCOUNT_NAME.fullmatch(value) is not None


def own_account(value):
    """An account name that is not the system's or another service's."""
    return account_name(value) and value not in SYSTEM_ACCOUNTS


def own_directory(value):
    """An absolute path, written plainly (no //, . or .., no trailing
    slash), that is not a system directory."""
    return (
        absolute_path(value)
        and os.path.normpath(value) == value
        and not value.startswith("//")
        and value not in SYSTEM_DIRECTORIES
    )


def writable_directory(value):
    """A directory of its own (own_directory) outside SYSTEM_TREES: one a
    sandboxed root service may be let write to."""
    return own_directory(value) and apart_from(value, SYSTEM_TREES)


def within(value, directory):
    """Strictly inside `directory` (both written plainly)."""
    return isinstance(value, str) and value.startswith(directory.rstrip("/") + "/")


def apart_from(value, directories):
    """Neither one of `directories`, nor inside one, nor holding one."""
    return all(
        value != other and not within(value, other) and not within(other, value)
        for other in directories
    )


def sql_name(value):
    """A lower-case SQL identifier (no quoting needed) that PostgreSQL
    neither creates itself nor reserves."""
    return (
        isinstance(value, str)
        and SQL_NAME.fullmatch(value) is not None
        and not value.startswith("pg_")
        and value not in POSTGRESQL_OWN_NAMES
    )


class TestModule:
    def tests(self):
        return {
            "list_of_strings": list_of_strings,
            "absolute_path": absolute_path,
            "absolute_file_path": absolute_file_path,
            "sql_name": sql_name,
            "account_name": account_name,
            "own_account": own_account,
            "own_directory": own_directory,
            "writable_directory": writable_directory,
            "within": within,
            "apart_from": apart_from,
        }
