"""Staff accounts: scrypt hashes, sign-in with lock-out, sessions and their CSRF tokens, the CLI's
`matcher users` and `matcher audit`. A real SQLite file per test."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from matcher.accounts import (
    SCRYPT_N,
    Accounts,
    check_csrf,
    hash_password,
    token_hash,
    verify_password,
)
from matcher.cli import app
from matcher.config import Settings
from matcher.errors import AuthError, ForbiddenError, InputError, LockedOutError, NotFoundError
from matcher.store import Store

PASSWORD = "湖州科协-2026-金桥"


@pytest.fixture()
def accounts(tmp_path: Path) -> Accounts:
    settings = Settings(db=tmp_path / "a.db", login_max_failures=3, login_lockout_minutes=10)
    store = Store(settings.db)
    yield Accounts(store, settings)
    store.close()


def actions(accounts: Accounts) -> list[tuple[str, str]]:
    entries, _ = accounts.store.list_audit(limit=100)
    return [(a.actor, a.action) for a in reversed(entries)]


# -- passwords -----------------------------------------------------------------------------------
def test_a_hash_is_scrypt_with_its_parameters_and_a_fresh_salt() -> None:
    one, two = hash_password(PASSWORD), hash_password(PASSWORD)
    assert one != two  # a salt per hash
    scheme, n, r, p, salt, digest = one.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", SCRYPT_N, 8, 1)
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(digest)) == 32
    # The reference: the standard library's scrypt with the stored salt and parameters.
    expected = hashlib.scrypt(
        PASSWORD.encode(),
        salt=base64.b64decode(salt),
        n=SCRYPT_N,
        r=8,
        p=1,
        maxmem=256 * 1024 * 1024,
        dklen=32,
    )
    assert base64.b64decode(digest) == expected
    assert verify_password(PASSWORD, one) and verify_password(PASSWORD, two)
    assert not verify_password(PASSWORD + " ", one)
    assert not verify_password(PASSWORD, "md5$abc") and not verify_password(PASSWORD, "garbage")


def test_an_older_cost_still_verifies() -> None:
    cheap = hash_password(PASSWORD, n=2**10)
    assert cheap.split("$")[1] == "1024" and verify_password(PASSWORD, cheap)


@pytest.mark.parametrize(
    ("name", "password", "needle"),
    [
        ("li hua", PASSWORD, "user name"),
        ("x", PASSWORD, "user name"),
        ("lihua", "short", "at least 10"),
        ("lihua", "my-lihua-password", "user name"),
        ("lihua", "aaaaaaaaaaaa", "too few"),
    ],
)
def test_weak_or_malformed_accounts_are_refused(
    accounts: Accounts, name: str, password: str, needle: str
) -> None:
    with pytest.raises(InputError, match=needle):
        accounts.add_user(name, password)
    assert accounts.store.list_users() == [] and actions(accounts) == []


def test_roles_are_checked_and_names_unique(accounts: Accounts) -> None:
    with pytest.raises(InputError, match="role"):
        accounts.add_user("lihua", PASSWORD, "root")
    accounts.add_user("lihua", PASSWORD, "admin", actor="cli:ops")
    with pytest.raises(InputError, match="exists"):
        accounts.add_user("lihua", PASSWORD + "x")
    [user] = accounts.store.list_users()
    assert (user.username, user.role) == ("lihua", "admin") and PASSWORD not in user.password_hash
    assert actions(accounts) == [("cli:ops", "user.add")]


# -- signing in ----------------------------------------------------------------------------------
def test_sign_in_makes_a_session_whose_token_is_stored_hashed(accounts: Accounts) -> None:
    accounts.add_user("lihua", PASSWORD)
    signed = accounts.sign_in("lihua", PASSWORD, ip="10.1.2.3")
    assert len(signed.token) >= 40 and len(signed.session.csrf_token) >= 40
    row = accounts.store.get_session(token_hash(signed.token))
    assert row is not None and row.ip == "10.1.2.3"
    raw = accounts.store.db.execute("SELECT token_hash FROM sessions").fetchall()
    assert raw == [(hashlib.sha256(signed.token.encode()).hexdigest(),)]  # never the token itself
    session = accounts.session(signed.token)
    assert session is not None and session.user.username == "lihua" and session.actor == "staff:lihua"
    assert session.csrf_token == signed.session.csrf_token
    hours = (datetime.fromisoformat(session.expires_at) - datetime.now(UTC)) / timedelta(hours=1)
    assert 11.9 < hours <= 12
    assert accounts.session("not-a-token") is None and accounts.session(None) is None
    accounts.sign_out(signed.token, ip="10.1.2.3")
    assert accounts.session(signed.token) is None
    assert actions(accounts) == [("cli", "user.add"), ("staff:lihua", "login"), ("staff:lihua", "logout")]


def test_wrong_passwords_and_unknown_users_get_the_same_answer(accounts: Accounts) -> None:
    accounts.add_user("lihua", PASSWORD)
    with pytest.raises(AuthError) as wrong:
        accounts.sign_in("lihua", "not the password")
    with pytest.raises(AuthError) as unknown:
        accounts.sign_in("wangwu", PASSWORD)
    assert wrong.value.message == unknown.value.message
    assert not isinstance(wrong.value, LockedOutError)
    assert actions(accounts)[1:] == [("staff:lihua", "login.failed"), ("anonymous:wangwu", "login.failed")]


def test_repeated_failures_lock_the_account_even_against_the_right_password(accounts: Accounts) -> None:
    accounts.add_user("lihua", PASSWORD)
    for _ in range(2):
        with pytest.raises(AuthError):
            accounts.sign_in("lihua", "wrong password!")
    with pytest.raises(LockedOutError, match="锁定"):  # the third failure locks (login_max_failures=3)
        accounts.sign_in("lihua", "wrong password!")
    with pytest.raises(LockedOutError):
        accounts.sign_in("lihua", PASSWORD)
    user = accounts.store.get_user("lihua")
    until = datetime.fromisoformat(user.locked_until)
    assert timedelta(minutes=9) < until - datetime.now(UTC) <= timedelta(minutes=10)
    # The lock runs out: the right password works again and clears the count.
    accounts.store.update_user(user.id, locked_until=(datetime.now(UTC) - timedelta(seconds=1)).isoformat())
    assert accounts.sign_in("lihua", PASSWORD).session.user.failed_logins == 0
    assert [a for _, a in actions(accounts)] == [
        "user.add",
        "login.failed",
        "login.failed",
        "login.failed",
        "login.refused",
        "login",
    ]


def test_an_unknown_name_is_locked_exactly_like_a_real_one(accounts: Accounts, monkeypatch) -> None:
    """Before, a real account answered 429 "locked" after 5 failures while an unknown name got 401
    for ever: the lock-out told which names exist. Now both lock after the same failures, with the
    same error and message, and every attempt on either path checks exactly one scrypt hash at
    today's parameters (the time a request takes is that check, whichever the path)."""
    import matcher.accounts as acc

    accounts.add_user("lihua", PASSWORD)
    checks: list[tuple[int, int, int]] = []
    real_scrypt = acc._scrypt
    monkeypatch.setattr(acc, "_scrypt", lambda pw, salt, n, r, p, dk: checks.append((n, r, p))
                        or real_scrypt(pw, salt, n, r, p, dk))

    def attempts(name: str) -> list[tuple[str, str, int]]:
        out = []
        for password in ("wrong password!", "wrong password!", "wrong password!", PASSWORD, "again wrong!"):
            checks.clear()
            with pytest.raises(AuthError) as err:
                accounts.sign_in(name, password)
            masked = re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", "TIME", err.value.message)
            out.append((type(err.value).__name__, masked, err.value.status))
            assert checks == [(SCRYPT_N, 8, 1)], (name, password, checks)
        return out

    real, ghost = attempts("lihua"), attempts("ghost-user")
    assert real == ghost
    assert [kind for kind, _, _ in real] == ["AuthError", "AuthError", "LockedOutError", "LockedOutError",
                                            "LockedOutError"]
    assert real[2][2] == 429 and "锁定至 TIME（北京时间）" in real[2][1] and "matcher" not in real[2][1]
    assert [a for _, a in actions(accounts)][-5:] == ["login.failed"] * 3 + ["login.refused"] * 2


def test_an_old_hash_is_made_again_with_todays_parameters_at_the_next_sign_in(accounts: Accounts) -> None:
    accounts.add_user("lihua", PASSWORD)
    user = accounts.store.get_user("lihua")
    accounts.store.update_user(user.id, password_hash=hash_password(PASSWORD, n=2**15))
    with pytest.raises(AuthError):
        accounts.sign_in("lihua", "not the password")
    assert accounts.store.get_user("lihua").password_hash.startswith("scrypt$32768$"), "not on a failure"
    accounts.sign_in("lihua", PASSWORD)
    upgraded = accounts.store.get_user("lihua").password_hash
    assert upgraded.startswith(f"scrypt${SCRYPT_N}$8$1$") and verify_password(PASSWORD, upgraded)
    entries, _ = accounts.store.list_audit(action="login")
    assert entries[0].detail == {"password_rehashed": True}
    accounts.sign_in("lihua", PASSWORD)  # once is enough
    assert accounts.store.get_user("lihua").password_hash == upgraded


def test_unlock_and_a_new_password_lift_a_lock_and_end_sessions(accounts: Accounts) -> None:
    accounts.add_user("lihua", PASSWORD)
    signed = accounts.sign_in("lihua", PASSWORD)
    for _ in range(3):
        with pytest.raises(AuthError):
            accounts.sign_in("lihua", "wrong password!")
    accounts.unlock("lihua")
    accounts.sign_in("lihua", PASSWORD)
    accounts.set_password("lihua", "一个全新的密码-2027")
    assert accounts.session(signed.token) is None  # signed out everywhere
    with pytest.raises(AuthError):
        accounts.sign_in("lihua", PASSWORD)
    assert accounts.sign_in("lihua", "一个全新的密码-2027").session.user.username == "lihua"
    with pytest.raises(NotFoundError):
        accounts.unlock("nobody")


def test_a_disabled_user_cannot_sign_in_and_loses_their_sessions(accounts: Accounts) -> None:
    accounts.add_user("lihua", PASSWORD)
    signed = accounts.sign_in("lihua", PASSWORD)
    accounts.set_disabled("lihua", True)
    assert accounts.session(signed.token) is None
    with pytest.raises(AuthError):
        accounts.sign_in("lihua", PASSWORD)
    accounts.set_disabled("lihua", False)
    assert accounts.sign_in("lihua", PASSWORD)


def test_an_expired_session_is_gone(accounts: Accounts) -> None:
    accounts.add_user("lihua", PASSWORD)
    signed = accounts.sign_in("lihua", PASSWORD)
    accounts.store.db.execute(
        "UPDATE sessions SET expires_at = ?", [(datetime.now(UTC) - timedelta(seconds=1)).isoformat()]
    )
    assert accounts.session(signed.token) is None


def test_the_csrf_check_compares_with_the_sessions_token(accounts: Accounts) -> None:
    accounts.add_user("lihua", PASSWORD)
    session = accounts.sign_in("lihua", PASSWORD).session
    check_csrf(session, session.csrf_token)
    for sent in (None, "", session.csrf_token[:-1], "x" * 43):
        with pytest.raises(ForbiddenError, match="CSRF"):
            check_csrf(session, sent)


# -- the CLI -------------------------------------------------------------------------------------
def test_cli_users_and_audit(tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    runner = CliRunner()
    res = runner.invoke(
        app,
        ["users", "add", "lihua", "--role", "admin", "--password-stdin", "--db", db],
        input=PASSWORD + "\n",
    )
    assert res.exit_code == 0, res.output
    assert "user lihua added (admin)" in res.output
    res = runner.invoke(app, ["users", "add", "zhang", "--db", db], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert res.exit_code == 0 and "zhang added (staff)" in res.output  # prompted twice
    res = runner.invoke(app, ["users", "add", "wang", "--password-stdin", "--db", db], input="short\n")
    assert res.exit_code == 2 and "at least 10" in res.output
    store = Store(db)
    accounts = Accounts(store, Settings(db=db, login_max_failures=2))
    for _ in range(2):
        with pytest.raises(AuthError):
            accounts.sign_in("zhang", "wrong password!", ip="10.0.0.9")
    listed = runner.invoke(app, ["users", "list", "--db", db]).output
    assert "lihua" in listed and "admin" in listed and "zhang" in listed and "locked until" in listed
    assert runner.invoke(app, ["users", "unlock", "zhang", "--db", db]).exit_code == 0
    assert accounts.sign_in("zhang", PASSWORD)
    assert runner.invoke(app, ["users", "disable", "nobody", "--db", db]).exit_code == 2
    res = runner.invoke(
        app, ["users", "passwd", "zhang", "--password-stdin", "--db", db], input="another-good-pass\n"
    )
    assert res.exit_code == 0
    store.close()

    out = runner.invoke(app, ["audit", "--db", db, "--json"]).output
    entries = [json.loads(line) for line in out.splitlines()]
    assert [e["action"] for e in entries] == [
        "user.passwd",
        "login",
        "user.unlock",
        "login.failed",
        "login.failed",
        "user.add",
        "user.add",
    ]
    assert entries[3]["ip"] == "10.0.0.9" and entries[3]["actor"] == "staff:zhang"
    assert all(PASSWORD not in line and "another-good-pass" not in line for line in out.splitlines())
    only = runner.invoke(app, ["audit", "--db", db, "--json", "--user", "zhang"]).output
    assert [json.loads(x)["action"] for x in only.splitlines()] == ["login", "login.failed", "login.failed"]
    family = runner.invoke(app, ["audit", "--db", db, "--json", "--action", "user."]).output
    assert len(family.splitlines()) == 4
    today = datetime.now(UTC).date().isoformat()
    assert len(runner.invoke(app, ["audit", "--db", db, "--json", "--from", today]).output.splitlines()) == 7
    assert runner.invoke(app, ["audit", "--db", db, "--json", "--to", "2001-01-01"]).output == ""
    bad = runner.invoke(app, ["audit", "--db", db, "--from", "2026-02-30"])
    assert bad.exit_code == 2 and "2026-02-30" in bad.output
    table = runner.invoke(app, ["audit", "--db", db])
    assert "login.failed" in table.output and "7 of 7 entries" in table.output
