"""The one error tree of the matcher. Every face (CLI, API, batch) catches `MatcherError`.

    MatcherError                      base; `status` is the HTTP status a face should use
    ├── InputError (422)              bad user input: empty/oversized text, bad parameters
    │   └── DataImportError (422)     a file or record that cannot be imported; carries row errors
    ├── NotFoundError (404)           an unknown expert/demand/run id
    ├── AuthError (401)               a missing or wrong API key, a wrong password, no session
    │   └── LockedOutError (429)      too many failed sign-ins: the account waits
    ├── ThrottledError (429)          too many wrong API keys from one client: it waits
    ├── ForbiddenError (403)          signed in, but not allowed: a missing CSRF token, another role
    ├── ConfigError (500)             a setting the server refuses to start with (a weak API key)
    ├── PayloadTooLargeError (413)    a request body or upload over the limit
    ├── IndexStateError (503)         the index is missing, corrupt, unfitted or of another version
    └── StoreError (503)              the database cannot be read or written (locked, disk full…)

Messages say what was wrong and how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass


class MatcherError(Exception):
    """Base of every error the library raises on purpose."""

    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(MatcherError, ValueError):
    status = 422


@dataclass(frozen=True)
class RowError:
    """One problem in one row of an imported file. `row` counts like a spreadsheet (header = 1)."""

    row: int
    column: str
    message: str
    source: str = ""

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        col = f" 列「{self.column}」" if self.column else ""
        return f"{where}第{self.row}行{col}: {self.message}"


class DataImportError(InputError):
    def __init__(self, message: str, errors: list[RowError] | None = None) -> None:
        self.errors = list(errors or [])
        if self.errors:
            shown = "\n".join(f"  - {e}" for e in self.errors[:20])
            more = f"\n  … and {len(self.errors) - 20} more" if len(self.errors) > 20 else ""
            message = f"{message}\n{shown}{more}"
        super().__init__(message)


class NotFoundError(MatcherError, LookupError):
    status = 404


class AuthError(MatcherError):
    status = 401


class LockedOutError(AuthError):
    status = 429


class ThrottledError(MatcherError):
    status = 429


class ForbiddenError(MatcherError):
    status = 403


class ConfigError(MatcherError):
    status = 500


class PayloadTooLargeError(MatcherError):
    status = 413


class IndexStateError(MatcherError):
    status = 503


class StoreError(MatcherError):
    status = 503
