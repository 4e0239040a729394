"""Credentials from the AWS shared credentials and config files (``~/.aws``)."""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import trio

from .._credentials import Credentials
from .._errors import MissingCredentials, SerializationError
from ..spi._auth import AuthProvider

__all__ = ["ProfileAuthProvider"]

PROFILE_VAR: Final = "AWS_PROFILE"
CREDENTIALS_FILE_VAR: Final = "AWS_SHARED_CREDENTIALS_FILE"
CONFIG_FILE_VAR: Final = "AWS_CONFIG_FILE"

_ACCESS_KEY: Final = "aws_access_key_id"
_SECRET_KEY: Final = "aws_secret_access_key"
# aws_security_token is the older spelling the AWS CLI still accepts.
_TOKEN_KEYS: Final = ("aws_session_token", "aws_security_token")

_Sections = dict[str, dict[str, str]]


def _expand(path: str | os.PathLike[str], env: Mapping[str, str]) -> Path:
    text = os.fspath(path)
    if text == "~" or text.startswith(("~/", "~" + os.sep)):
        home = env.get("HOME") or str(Path.home())
        return Path(home + text[1:])
    return Path(text)


def _read(path: Path) -> _Sections | None:
    """The file's sections, or None when it does not exist. Runs in a worker thread."""
    failure: str | None = None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        failure = f"{path} cannot be read: {exc.strerror or type(exc).__name__}"
    except UnicodeDecodeError:
        failure = f"{path} is not UTF-8 text"
    if failure is not None:
        # Raised outside the handler, so the original (which may hold the file's bytes)
        # is not kept as context.
        raise MissingCredentials(failure)
    # No interpolation: secrets may contain "%". No special [DEFAULT] section either:
    # the AWS files have none, and it would leak its keys into every profile.
    parser = configparser.RawConfigParser(
        default_section="\0", strict=False, empty_lines_in_values=False
    )
    lines: list[int] = []
    try:
        parser.read_string(text, source=str(path))
    except configparser.MissingSectionHeaderError as exc:
        lines = [exc.lineno]
    except configparser.ParsingError as exc:
        lines = [lineno for lineno, _line in exc.errors]
    if lines:
        # The parser's own message quotes the offending lines, which may be secrets.
        where = ", ".join(str(n) for n in lines)
        raise SerializationError(f"{path} is not a valid AWS INI file (line {where})")
    return {name: dict(parser.items(name)) for name in parser.sections()}


def _config_section(sections: _Sections, profile: str) -> dict[str, str] | None:
    # In the config file a profile is "[profile NAME]"; only the default may be "[default]".
    if profile == "default" and "default" in sections:
        return sections["default"]
    for name, section in sections.items():
        words = name.split()
        if len(words) == 2 and words[0] == "profile" and words[1] == profile:
            return section
    return None


def _load(profile: str, credentials_path: Path, config_path: Path) -> Credentials:
    """Credentials for ``profile`` from the two files. Runs in a worker thread."""
    found_without_keys: list[Path] = []
    missing_files: list[Path] = []
    for path, is_config in ((credentials_path, False), (config_path, True)):
        sections = _read(path)
        if sections is None:
            missing_files.append(path)
            continue
        section = _config_section(sections, profile) if is_config else sections.get(profile)
        if section is None:
            continue
        access_key = section.get(_ACCESS_KEY, "").strip()
        secret_key = section.get(_SECRET_KEY, "").strip()
        if access_key and secret_key:
            token = next((v for k in _TOKEN_KEYS if (v := section.get(k, "").strip())), None)
            return Credentials(access_key, secret_key, token)
        if access_key or secret_key:
            absent = _SECRET_KEY if access_key else _ACCESS_KEY
            raise MissingCredentials(f"profile {profile!r} in {path} has no {absent}")
        found_without_keys.append(path)
    if found_without_keys:
        where = " and ".join(str(p) for p in found_without_keys)
        raise MissingCredentials(
            f"profile {profile!r} in {where} has no {_ACCESS_KEY} and {_SECRET_KEY}; "
            "profiles that use role_arn, sso_session or credential_process are not supported"
        )
    if len(missing_files) == 2:
        raise MissingCredentials(
            f"no AWS profile {profile!r}: neither {credentials_path} nor {config_path} exists"
        )
    looked = " or ".join(
        str(p) + (" (does not exist)" if p in missing_files else "")
        for p in (credentials_path, config_path)
    )
    raise MissingCredentials(f"no profile {profile!r} in {looked}")


class ProfileAuthProvider(AuthProvider):
    """Reads static keys of a named profile from the AWS shared credentials and config files.

    At each call (so edits to the files are picked up by the next refresh) it resolves:

    - the profile: the ``profile`` argument, else ``AWS_PROFILE``, else ``default``;
    - the credentials file: ``credentials_file``, else ``AWS_SHARED_CREDENTIALS_FILE``,
      else ``~/.aws/credentials``; its sections are bare profile names (``[dev]``);
    - the config file: ``config_file``, else ``AWS_CONFIG_FILE``, else ``~/.aws/config``;
      its sections are ``[profile dev]``, except ``[default]``.

    The profile's ``aws_access_key_id``, ``aws_secret_access_key`` and optional
    ``aws_session_token`` are read from the credentials file when the profile has keys
    there, else from the config file: the credentials file wins, and the two are never
    mixed. The files are read in a worker thread (``trio.to_thread``), since file I/O
    blocks.

    Every failure is a :class:`~cloudkit_trio.MissingCredentials` naming the files and the
    profile (a missing file, profile or key; a profile that uses ``role_arn``, SSO or
    ``credential_process``, which this provider does not follow), except a file that is
    not valid INI: :class:`~cloudkit_trio.SerializationError` with the line number, never
    the line.

    Args:
        profile: The profile name; ``AWS_PROFILE`` or ``default`` when omitted.
        credentials_file: Path of the shared credentials file.
        config_file: Path of the shared config file.
        environ: The environment to read; ``os.environ`` when omitted. ``~`` expands to
            its ``HOME``.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        profile: str | None = None,
        *,
        credentials_file: str | os.PathLike[str] | None = None,
        config_file: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if profile is not None and (not isinstance(profile, str) or not profile.strip()):
            raise ValueError("profile must be a non-empty profile name or None")
        self.profile = None if profile is None else profile.strip()
        self.credentials_file = credentials_file
        self.config_file = config_file
        self._environ = environ

    def _resolve(self) -> tuple[str, Path, Path]:
        env = os.environ if self._environ is None else self._environ
        profile = self.profile or env.get(PROFILE_VAR, "").strip() or "default"
        credentials_file = (
            self.credentials_file
            or env.get(CREDENTIALS_FILE_VAR, "").strip()
            or "~/.aws/credentials"
        )
        config_file = self.config_file or env.get(CONFIG_FILE_VAR, "").strip() or "~/.aws/config"
        return profile, _expand(credentials_file, env), _expand(config_file, env)

    async def get_credentials(self) -> Credentials:
        profile, credentials_path, config_path = self._resolve()
        return await trio.to_thread.run_sync(_load, profile, credentials_path, config_path)

    def __repr__(self) -> str:
        if self.profile is None:
            return "ProfileAuthProvider()"
        return f"ProfileAuthProvider({self.profile!r})"
