"""The team server's settings: who may do what, where pages may read and write, and how much work runs at once.

One TOML file that the admin edits: $WILDVISION_SETTINGS, else `settings.toml` in the working folder (the clone,
where `streamlit run Home.py` starts). Every key is optional; docs/settings.example.toml lists them all. It is read
on every call (a small file), so an edit takes effect on the next page run without restarting the server.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from wildvision import runs, shared
from wildvision.screening.config import default_screens_dir

SETTINGS_ENV = "WILDVISION_SETTINGS"
ROLES = ("viewer", "reviewer", "operator", "admin")  # each may do what the ones before it may


class SettingsError(ValueError):
    """The settings file cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Settings:
    """What the settings file says, with the defaults filled in.

    `members` maps a lower-case e-mail address to its role; `role_claim` names an OpenID Connect claim that carries the
    role instead (an identity provider's groups), checked first. Read roots are where page inputs may read; write roots
    (also readable) where pages may create folders and files.
    """

    members: dict[str, str]
    role_claim: str | None
    read_roots: tuple[Path, ...]
    write_roots: tuple[Path, ...]
    max_background_jobs: int
    max_jobs_per_person: int
    upload_max_files: int
    upload_max_megabytes: int
    upload_max_megapixels: int
    serve_network_without_sign_in: bool
    path: Path | None  # the file read, None where there is none


def settings_file() -> Path:
    """$WILDVISION_SETTINGS, else settings.toml in the working folder."""
    return Path(os.environ.get(SETTINGS_ENV) or "settings.toml").expanduser()


def default_background_jobs() -> int:
    """Half the cores, at least 2 and at most 4: a screening job holds about 1 GB and a core while it scores."""
    return max(2, min((os.cpu_count() or 2) // 2, 4))


def _positive_int(table: dict, key: str, default: int, where: str) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SettingsError(f"{where}: [limits] {key} must be a whole number of at least 1, not {value!r}")
    return value


def _folders(table: dict, key: str, where: str) -> tuple[Path, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise SettingsError(f'{where}: [roots] {key} must be a list of folder paths, e.g. {key} = ["/data/scrapes"]')
    return tuple(Path(item).expanduser() for item in value)


def _members(table: dict, where: str) -> dict[str, str]:
    members: dict[str, str] = {}
    for role, emails in table.items():
        if role == "claim":
            continue
        if role not in ROLES:
            raise SettingsError(f"{where}: [roles] has {role!r}; the roles are {', '.join(ROLES)} (and claim)")
        if not isinstance(emails, list) or not all(isinstance(email, str) and "@" in email for email in emails):
            raise SettingsError(f"{where}: [roles] {role} must be a list of e-mail addresses")
        for email in emails:
            members[email.strip().lower()] = max(members.get(email.strip().lower(), role), role, key=ROLES.index)
    return members


def load_settings(path: str | Path | None = None) -> Settings:
    """The settings in `path` (default: settings_file()), or the defaults where there is no such file.

    Raises SettingsError for a file that is not valid TOML or holds a wrong value, so a typo never quietly opens the
    server up (or locks its team out) without anyone being told.
    """
    path = Path(path) if path is not None else settings_file()
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text, path = "", None
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(f"{where} cannot be read ({error})") from error
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{where} is not valid TOML: {error}") from error
    roles, roots, limits, server = (data.get(name, {}) for name in ("roles", "roots", "limits", "server"))
    for name, table in (("roles", roles), ("roots", roots), ("limits", limits), ("server", server)):
        if not isinstance(table, dict):
            raise SettingsError(f"{where}: {name} must be a table ([{name}])")
    claim = roles.get("claim")
    if claim is not None and (not isinstance(claim, str) or not claim.strip()):
        raise SettingsError(f'{where}: [roles] claim must be the name of a claim, e.g. claim = "wildvision_role"')
    write_roots = (runs.default_runs_dir(), default_screens_dir(), *_folders(roots, "write", where))
    read_roots = (shared.shared_folder(), *_folders(roots, "read", where))
    open_network = server.get("serve_network_without_sign_in", False)
    if not isinstance(open_network, bool):
        raise SettingsError(f"{where}: [server] serve_network_without_sign_in must be true or false")
    return Settings(
        members=_members(roles, where),
        role_claim=claim,
        read_roots=read_roots,
        write_roots=write_roots,
        max_background_jobs=_positive_int(limits, "background_jobs", default_background_jobs(), where),
        max_jobs_per_person=_positive_int(limits, "jobs_per_person", 2, where),
        upload_max_files=_positive_int(limits, "upload_files", 500, where),
        upload_max_megabytes=_positive_int(limits, "upload_megabytes", 200, where),
        upload_max_megapixels=_positive_int(limits, "upload_megapixels", 2000, where),
        serve_network_without_sign_in=open_network,
        path=path,
    )
