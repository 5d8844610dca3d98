"""The portal's ledger modules on their own: accounts, analytics (k-anonymity), migration 0200,
settings (the server secret)."""

import os
import stat

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ledger import accounts, analytics
from ledger.config import ConfigError
from ledger.db import downgrade, table_names, upgrade
from ledger.models import Base
from webapp.settings import PortalSettings, devnet_secret

SECRET = "s" * 40


# ----------------------------------------------------------------------------- accounts


def test_custodial_key_is_encrypted_at_rest_and_needs_the_secret(engine):
    user = accounts.create_user(engine, "keyholder", "long enough password", ["artist"], SECRET)
    account = accounts.custodial_account(user, SECRET)
    assert account.address == user.address
    assert bytes(account.key) not in user.encrypted_key and bytes(account.key).hex().encode() not in user.encrypted_key
    with pytest.raises(accounts.UserError, match="cannot be decrypted"):
        accounts.custodial_account(user, "another secret of enough length")


def test_keys_differ_per_user_and_the_secret_must_be_long(engine):
    a = accounts.create_user(engine, "user-a", "long enough password", ["artist"], SECRET)
    b = accounts.create_user(engine, "user-b", "long enough password", ["artist"], SECRET)
    assert a.address != b.address and a.encrypted_key != b.encrypted_key
    with pytest.raises(accounts.UserError, match="too short"):
        accounts.encrypt_key(b"k" * 32, "short")


def test_wallet_users_have_no_custodial_key(engine):
    user = accounts.user_for_wallet(engine, "0x" + "ab" * 20)
    assert user.wallet and user.encrypted_key is None and user.password_hash is None
    assert accounts.user_for_wallet(engine, "0x" + "AB" * 20).id == user.id
    with pytest.raises(accounts.UserError, match="own wallet"):
        accounts.custodial_account(user, SECRET)
    assert accounts.authenticate(engine, user.username, "") is None


def test_tokens_resolve_only_while_live(engine):
    user = accounts.create_user(engine, "tokenholder", "long enough password", ["label"], SECRET)
    new = accounts.create_token(engine, user.id, "ci")
    assert accounts.user_for_token(engine, new.secret)[0].id == user.id
    assert accounts.user_for_token(engine, new.secret[:-1] + "x") is None
    assert accounts.user_for_token(engine, "no prefix") is None
    assert accounts.revoke_token(engine, user.id, new.token.id)
    assert not accounts.revoke_token(engine, user.id, new.token.id)
    assert accounts.user_for_token(engine, new.secret) is None


# ----------------------------------------------------------------------------- analytics


def test_territory_cells_below_k_devices_merge_into_other(engine, seeded):
    for k, expected in [
        (
            1,
            {
                ("2026-10", "GB"): 60,
                ("2026-10", "FR"): 5,
                ("2026-10", "US"): 7,
                ("2026-11", "GB"): 40,
                ("2026-11", "FR"): 2,
            },
        ),
        (3, {("2026-10", "GB"): 60, ("2026-10", "other"): 12, ("2026-11", "other"): 42}),
        (4, {("2026-10", "other"): 72, ("2026-11", "other"): 42}),
    ]:
        report = analytics.plays_by_territory(engine, [1], k)
        assert {(c.period, c.territory): c.plays for c in report.cells} == expected, k
        assert sum(c.earnings for c in report.cells) == seeded.gross_w1


def test_time_series_add_up_to_the_work_totals(engine, seeded):
    for granularity in ("day", "month"):
        points = analytics.plays_over_time(engine, [1], granularity)
        assert sum(p.plays for p in points) == seeded.plays_w1
        assert sum(p.earnings for p in points) == seeded.gross_w1
    assert analytics.plays_over_time(engine, [1], "month", 202611, 202611)[0].plays == 42
    assert analytics.plays_over_time(engine, [], "day") == []


def test_visibility_is_ownership_or_a_payee_share(engine, seeded):
    assert analytics.visible_work_ids(engine, seeded.alice) == [1]
    assert analytics.visible_work_ids(engine, seeded.label) == [1]
    assert analytics.visible_work_ids(engine, seeded.bob) == [2]
    assert analytics.visible_work_ids(engine, "0x" + "99" * 20) == []


def test_unlicensed_plays_by_licensee_and_territory(engine, seeded):
    from portal_seed import PIRATE

    [row] = analytics.unlicensed_plays(engine, 1)
    assert (row.licensee, row.territory, row.plays) == (PIRATE, "US", 7)


def test_balance_from_the_index(engine, seeded):
    b = analytics.balance(engine, seeded.alice)
    assert (b.credited, b.withdrawn, b.available) == (45_500, 10_000, 35_500)
    assert analytics.balance(engine, seeded.bob).available == 0


# ----------------------------------------------------------------------------- migration


def test_migration_0200_up_down_and_matches_the_models(db_url):
    from ledger.db import make_engine

    engine = make_engine(db_url)
    try:
        upgrade(engine)
        assert {"portal_users", "portal_api_tokens", "portal_actions"} <= set(table_names(engine))
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
        downgrade(engine, "0100")
        assert not {"portal_users", "portal_api_tokens", "portal_actions"} & set(table_names(engine))
        upgrade(engine)
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------- settings


def test_devnet_secret_is_generated_once_and_kept_private(tmp_path):
    path = tmp_path / "var" / "secret_key"
    first = devnet_secret(path)
    assert len(first) >= 32 and devnet_secret(path) == first
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert PortalSettings.from_env({}, secret_file=path).secret_key == first


def test_production_requires_a_secret(tmp_path):
    with pytest.raises(ConfigError, match="LEDGER_SECRET_KEY must be set in production"):
        PortalSettings.from_env({"LEDGER_ENV": "production"}, secret_file=tmp_path / "secret")
    assert not (tmp_path / "secret").exists()
    with pytest.raises(ConfigError, match="at least 32"):
        PortalSettings.from_env({"LEDGER_ENV": "production", "LEDGER_SECRET_KEY": "short"})
    ok = PortalSettings.from_env(
        {
            "LEDGER_ENV": "production",
            "LEDGER_SECRET_KEY": "p" * 40,
            "LEDGER_GAS_BUDGET": "1_000_000",
            "LEDGER_K_ANONYMITY": "5",
        }
    )
    assert ok.production and ok.gas_budget == 1_000_000 and ok.k_anonymity == 5
    assert "p" * 40 not in repr(ok)


@pytest.mark.parametrize("env", [{"LEDGER_ENV": "staging"}, {"LEDGER_K_ANONYMITY": "0"}, {"LEDGER_GAS_BUDGET": "lots"}])
def test_bad_settings_are_refused(tmp_path, env):
    with pytest.raises(ConfigError):
        PortalSettings.from_env({"LEDGER_SECRET_KEY": "p" * 40, **env}, secret_file=tmp_path / "s")
