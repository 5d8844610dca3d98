"""The ``ledger`` command: deploy, index, statements, works, balances, migrations.

Settings come from LEDGER_* environment variables (see ledger.config), and the global options
override them. User mistakes print one line on stderr and exit with status 2; failures of the
chain, the database or the contracts exit with 1; no tracebacks unless --debug.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .config import DEFAULT_GAS_CAP, DEFAULT_LOG_LEVEL, DEFAULT_MQTT_URL, LOG_LEVELS, MAX_TX_BYTES, Settings
from .errors import ContractRevert, LedgerError, UserError

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from web3 import Web3

    from .chain import Deployment

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _partition(text: str) -> tuple[int, int]:
    """``K/N`` of ``ledger relay --partition``: 0 <= K < N."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not K/N") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"{text!r}: K must be at least 0 and below N")
    return k, n


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ledger",
        description="Royalty and licensing ledger: deploy the contracts, index their events into SQL, "
        "and produce royalty statements.",
        epilog="Environment: LEDGER_RPC_URL, LEDGER_DATABASE_URL, LEDGER_DEPLOYMENTS, LEDGER_CONFIRMATIONS, "
        "LEDGER_BLOCK_RANGE, LEDGER_PRIVATE_KEY, LEDGER_TOKEN_ADDRESS, LEDGER_BUILD_DIR, "
        "LEDGER_RELAYER_KEY, LEDGER_MQTT_URL, LEDGER_MQTT_TOPIC_PREFIX, LEDGER_LOG_LEVEL. See docs/ledger.md.",
    )
    p.add_argument("--version", action="version", version=f"ledger {__version__}")
    p.add_argument("--rpc-url", help="JSON-RPC endpoint (LEDGER_RPC_URL; default http://127.0.0.1:8545)")
    p.add_argument("--database-url", help="SQLAlchemy database URL (LEDGER_DATABASE_URL; default var/ledger.sqlite3)")
    p.add_argument(
        "--deployments",
        type=Path,
        help="deployments file or folder of <chainId>.json (LEDGER_DEPLOYMENTS; default deployments/)",
    )
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        help=f"log level (LEDGER_LOG_LEVEL; default {DEFAULT_LOG_LEVEL})",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks (and log at DEBUG unless --log-level)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = sub.add_parser(
        "deploy",
        help="deploy WorkRegistry and RoyaltyLedger (and the devnet test token)",
        description="Deploys the contracts from compiled artifacts with the key in LEDGER_PRIVATE_KEY "
        "(or the node's first unlocked account) and writes deployments/<chainId>.json.",
    )
    d.add_argument(
        "--token", help="settlement token address (LEDGER_TOKEN_ADDRESS); default on a devnet: deploy TestStablecoin"
    )
    d.add_argument(
        "--test-token",
        action="store_true",
        help="deploy the open-mint TestStablecoin even on a chain that is not a devnet",
    )
    d.add_argument("--build-dir", type=Path, help="compiled artifacts (LEDGER_BUILD_DIR; default build/contracts)")
    d.add_argument("--force", action="store_true", help="overwrite an existing deployments file of this chain")

    i = sub.add_parser(
        "index",
        help="index contract events into the database",
        description="Indexes events from the stored checkpoint up to the head minus the "
        "confirmations, one SQL transaction per block range.",
    )
    i.add_argument("--follow", action="store_true", help="keep indexing new blocks until interrupted")
    i.add_argument("--rebuild", action="store_true", help="empty the index and rebuild it from the deploy block")
    i.add_argument("--to-block", type=int, help="stop at this block")
    i.add_argument("--confirmations", type=int, help="blocks to wait (LEDGER_CONFIRMATIONS; default 0)")
    i.add_argument("--block-range", type=int, help="blocks per range/transaction (LEDGER_BLOCK_RANGE; default 2000)")
    i.add_argument("--poll", type=float, default=2.0, help="seconds between polls with --follow (default 2)")
    bar = i.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show progress")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")

    s = sub.add_parser(
        "statement",
        help="royalty statement of a payee for a period",
        description="One row per work (plays, licensed plays, gross, share, net) and totals. "
        "See docs/statements.md for the columns.",
    )
    s.add_argument("--payee", required=True, help="payee address (artist or label)")
    s.add_argument("--period", help="a month (2026-11) or 'all'")
    s.add_argument("--from", dest="start", metavar="YYYY-MM", help="first month (inclusive)")
    s.add_argument("--to", dest="end", metavar="YYYY-MM", help="last month (inclusive)")
    s.add_argument("--format", choices=("csv", "json"), default="csv", help="output format (default csv)")
    s.add_argument("--output", "-o", type=Path, help="write to this file instead of stdout")
    s.add_argument(
        "--by-territory",
        action="store_true",
        help="usage per work and territory (plays, licensed plays, gross) instead",
    )

    w = sub.add_parser("works", help="list indexed works", description="Works in the index, with running totals.")
    w.add_argument("--owner", help="only works owned by this address")
    w.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")

    b = sub.add_parser(
        "balance",
        help="balances of an address on the chain (and in the index)",
        description="Withdrawable payee balance, licensee escrow and token balance from the chain; "
        "credited and withdrawn totals from the index when it is available.",
    )
    b.add_argument("address", help="the address to look up")
    b.add_argument("--format", choices=("text", "json"), default="text")

    db = sub.add_parser(
        "db", help="database schema (Alembic migrations)", description="Migrates the database in LEDGER_DATABASE_URL."
    )
    dbsub = db.add_subparsers(dest="db_command", metavar="ACTION")
    dbsub.required = True
    up = dbsub.add_parser("upgrade", help="upgrade the schema (default: to head)")
    up.add_argument("revision", nargs="?", default="head")
    down = dbsub.add_parser("downgrade", help="downgrade the schema ('base' empties it)")
    down.add_argument("revision")
    dbsub.add_parser("current", help="print the schema revision")

    r = sub.add_parser(
        "relay",
        help="relay pending play batches to the chain",
        description="Packs pending batches into submitBatches calls and settles them. The key "
        "comes from LEDGER_RELAYER_KEY, else LEDGER_PRIVATE_KEY (one relayer per key).",
    )
    r.add_argument("--ledger", help="RoyaltyLedger address (default: from the deployments file)")
    r.add_argument("--gas-cap", type=int, default=DEFAULT_GAS_CAP, help="largest gas of one transaction")
    r.add_argument(
        "--max-bytes",
        type=int,
        default=MAX_TX_BYTES,
        help="largest signed transaction in bytes (a default geth mempool takes 131072)",
    )
    r.add_argument("--once", action="store_true", help="relay until nothing is pending, then exit")
    r.add_argument("--idle", type=float, default=1.0, help="seconds to sleep when nothing is pending")
    r.add_argument(
        "--unlicensed-per-day",
        type=int,
        help="plays of batches that pay nobody sent per licensee per UTC day (LEDGER_UNLICENSED_PLAYS_PER_DAY)",
    )
    r.add_argument(
        "--partition",
        type=_partition,
        default=(0, 1),
        metavar="K/N",
        help="relay only licensees whose index modulo N is K (N relayers, one key each; default 0/1: all)",
    )

    m = sub.add_parser(
        "ingest-mqtt",
        help="ingest play batches from MQTT",
        description="Consumes plays/<device> (QoS 1) and acknowledges on plays/<device>/ack.",
    )
    m.add_argument("--mqtt-url", help=f"broker (LEDGER_MQTT_URL; default {DEFAULT_MQTT_URL})")
    m.add_argument("--ledger", help="RoyaltyLedger address (default: from the deployments file)")
    m.add_argument(
        "--client-id",
        default="ledger-ingest",
        help="MQTT client id; keep it stable so the broker keeps the session while it is down",
    )
    m.add_argument("--shared-group", help="share the load with other consumers ($share/NAME/plays/+)")
    m.add_argument(
        "--workers",
        type=int,
        default=16,
        help="batches handled at once (their stores share one commit; default 16)",
    )
    return p


# ----------------------------------------------------------------------------- commands


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env().with_(rpc_url=args.rpc_url, database_url=args.database_url, deployments=args.deployments)


def _engine(settings: Settings, migrate_if_empty: bool = False) -> Engine:
    from .runtime import open_engine

    return open_engine(settings, migrate_if_empty)


def _chain(settings: Settings) -> tuple[Web3, Deployment]:
    from .runtime import open_chain

    return open_chain(settings)


def cmd_deploy(args: argparse.Namespace, settings: Settings) -> int:
    from .chain import connect, deploy, resolve_account

    w3 = connect(settings.rpc_url)
    path = settings.deployment_file(w3.eth.chain_id)
    if path.exists() and not args.force:
        raise UserError(f"{path} exists: pass --force to deploy again and overwrite it")
    account = resolve_account(w3, settings.private_key)
    deployment = deploy(
        w3,
        account,
        args.build_dir or settings.build_dir,
        args.token or settings.token_address,
        test_token=args.test_token,
    )
    deployment.save(path)
    for name, info in deployment.contracts.items():
        print(f"{name:15} {info.address}")
    print(f"chain {deployment.chain_id}, deploy block {deployment.deploy_block}: wrote {path}")
    return EXIT_OK


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    from .indexer import Indexer, IndexStats

    engine = _engine(settings, migrate_if_empty=True)
    w3, deployment = _chain(settings)
    confirmations = settings.confirmations if args.confirmations is None else args.confirmations
    if confirmations < 0:
        raise UserError("--confirmations must be 0 or more")
    block_range = args.block_range or settings.block_range
    if block_range < 1:
        raise UserError("--block-range must be at least 1")
    indexer = Indexer(
        engine,
        w3,
        deployment,
        confirmations=confirmations,
        block_range=block_range,
        progress=args.progress,
        max_reorg_depth=settings.reorg_depth,
    )

    def report(stats: IndexStats) -> None:
        for before, ancestor in stats.rollbacks:
            print(f"chain reorganised: rolled the index back from block {before} to block {ancestor}", flush=True)
        rate = stats.plays_rows / stats.seconds if stats.seconds else 0
        print(
            f"indexed blocks {stats.from_block}..{stats.to_block}: {stats.events} events, "
            f"{stats.plays_rows} play rows in {stats.ranges} ranges, {stats.seconds:.1f}s"
            + (f" ({rate:,.0f} play rows/s)" if stats.plays_rows else ""),
            flush=True,
        )

    stats = indexer.run(to_block=args.to_block, rebuild=args.rebuild)
    if stats.ranges or not args.follow:
        report(stats) if stats.ranges else print(f"index is up to date at block {stats.to_block}")
    if args.follow:
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        try:
            indexer.follow(poll_interval=args.poll, should_stop=lambda: bool(stopping), on_stats=report)
        except KeyboardInterrupt:
            pass
    return EXIT_OK


def cmd_statement(args: argparse.Namespace, settings: Settings) -> int:
    from .address import checksum
    from .statements import Statement, TerritoryUsage, parse_period, statement, statement_at, usage_by_territory

    payee = checksum(args.payee, "--payee")
    period = parse_period(args.period, args.start, args.end)
    # The statement alone reads the index through the driver (no SQLAlchemy to import: start-up
    # is most of this command's time); by territory, or for other URLs, through an engine.
    st: Statement | TerritoryUsage | None = (
        None if args.by_territory else statement_at(settings.database_url, payee, period)
    )
    if st is None:
        engine = _engine(settings)
        st = (usage_by_territory if args.by_territory else statement)(engine, payee, period)
    text = st.to_csv() if args.format == "csv" else st.to_json()
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_works(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from .address import checksum
    from .models import Work

    owner = checksum(args.owner, "--owner") if args.owner else None
    engine = _engine(settings)
    query = select(Work).order_by(Work.work_id)
    if owner:
        query = query.where(Work.owner == owner)
    with Session(engine) as session:
        works = list(session.scalars(query))
    cols = (
        "work_id",
        "title",
        "isrc",
        "iswc",
        "owner",
        "plays",
        "licensed_plays",
        "accrued",
        "undistributed",
        "split_locked",
    )
    rows = [
        (
            w.work_id,
            w.title or "",
            w.isrc or "",
            w.iswc or "",
            w.owner,
            w.plays,
            w.licensed_plays,
            w.accrued,
            w.accrued - w.distributed,
            w.split_locked,
        )
        for w in works
    ]
    if args.format == "json":
        money = ("accrued", "undistributed")
        print(
            json.dumps(
                [{k: (str(v) if k in money else v) for k, v in zip(cols, r, strict=True)} for r in rows], indent=2
            )
        )
    elif args.format == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(cols)
        writer.writerows(rows)
        sys.stdout.write(out.getvalue())
    else:
        if not rows:
            print("no works indexed (run `ledger index`)")
            return EXIT_OK
        table = [cols] + [tuple(str(v) for v in r) for r in rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
        for r in table:
            print("  ".join(v.ljust(widths[i]) for i, v in enumerate(r)).rstrip())
    return EXIT_OK


def cmd_balance(args: argparse.Namespace, settings: Settings) -> int:
    from .chain import LedgerClient, checksum

    address = checksum(args.address)
    w3, deployment = _chain(settings)
    client = LedgerClient(w3, deployment)
    result = {
        "address": address,
        "payee_balance": client.balance_of(address),
        "escrow": client.escrow_of(address),
        "token_balance": client.token_balance(address),
    }
    try:
        from sqlalchemy import select

        from .models import Payee

        engine = _engine(settings)
        with engine.connect() as conn:
            row = conn.execute(select(Payee.credited, Payee.withdrawn).where(Payee.address == address)).first()
        result["indexed_credited"] = row.credited if row else 0
        result["indexed_withdrawn"] = row.withdrawn if row else 0
    except LedgerError as exc:
        result["index"] = f"unavailable: {exc}"
    if args.format == "json":
        print(json.dumps({k: (str(v) if isinstance(v, int) else v) for k, v in result.items()}, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:18} {value}")
    return EXIT_OK


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from .db import check_connection, current_revision, downgrade, make_engine, upgrade

    engine = make_engine(settings.database_url)
    check_connection(engine)
    if args.db_command == "upgrade":
        upgrade(engine, args.revision)
    elif args.db_command == "downgrade":
        downgrade(engine, args.revision)
    print(f"schema revision: {current_revision(engine) or 'base (empty)'}")
    return EXIT_OK


def cmd_relay(args: argparse.Namespace, settings: Settings) -> int:
    import threading

    from eth_account import Account

    from .relayer import ENVELOPE_RESERVE, Relayer, RelayerConfig
    from .runtime import open_runtime

    key = settings.relayer_private_key
    if not key:
        raise UserError("set LEDGER_RELAYER_KEY (or LEDGER_PRIVATE_KEY) to the relayer's private key")
    try:
        account = Account.from_key(key)
    except Exception:  # noqa: BLE001 - eth-account raises several types; never echo the key
        raise UserError("LEDGER_RELAYER_KEY is not a valid private key") from None
    rt = open_runtime(settings, args.ledger)
    per_day = settings.unlicensed_plays_per_day if args.unlicensed_per_day is None else args.unlicensed_per_day
    if per_day < 0:
        raise UserError("--unlicensed-per-day must be at least 0")
    config = RelayerConfig(
        gas_cap=args.gas_cap,
        max_input_bytes=args.max_bytes - ENVELOPE_RESERVE,
        idle_sleep=args.idle,
        unlicensed_plays_per_day=per_day,
        partition=args.partition,
    )
    relayer = Relayer(rt.w3, rt.deployment, account, rt.engine, config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    reports = relayer.run(stop=stop, once=args.once)
    if args.once:
        print(
            f"relayed {len(reports)} transactions: {sum(r.confirmed for r in reports)} batches confirmed, "
            f"{sum(r.rejected for r in reports)} rejected, {sum(r.repending for r in reports)} back to pending"
        )
    return EXIT_OK


def cmd_ingest_mqtt(args: argparse.Namespace, settings: Settings) -> int:
    from .ingest import IngestContext
    from .mqtt import MqttIngest
    from .runtime import open_runtime

    rt = open_runtime(settings, args.ledger)
    ctx = IngestContext.create(rt.w3, rt.deployment, rt.engine, max_unsettled=settings.device_backlog)
    consumer = MqttIngest(
        ctx,
        args.mqtt_url or settings.mqtt_url,
        client_id=args.client_id,
        shared_group=args.shared_group,
        topic_prefix=settings.mqtt_topic_prefix,
        workers=args.workers,
    )
    signal.signal(signal.SIGTERM, lambda *_: consumer.client.disconnect())
    try:
        consumer.run_forever()
    except KeyboardInterrupt:
        consumer.client.disconnect()
    return EXIT_OK


COMMANDS = {
    "deploy": cmd_deploy,
    "index": cmd_index,
    "statement": cmd_statement,
    "works": cmd_works,
    "balance": cmd_balance,
    "db": cmd_db,
    "relay": cmd_relay,
    "ingest-mqtt": cmd_ingest_mqtt,
}


def _configure_logging(args: argparse.Namespace, settings: Settings) -> None:
    level = args.log_level or ("DEBUG" if args.debug else settings.log_level)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level == "DEBUG":  # web3's and urllib3's debug logs print every request: keep them at INFO
        for noisy in ("web3", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
        _configure_logging(args, settings)
        return COMMANDS[args.command](args, settings)
    except UserError as exc:  # ConfigError among them
        if args.debug:
            raise
        print(f"ledger: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ContractRevert as exc:
        if args.debug:
            raise
        print(f"ledger: the contract refused: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except LedgerError as exc:
        if args.debug:
            raise
        print(f"ledger: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("ledger: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # SQLAlchemy / web3 failures that are not the user's fault
        if args.debug:
            raise
        from sqlalchemy.exc import SQLAlchemyError

        kind = "database" if isinstance(exc, SQLAlchemyError) else type(exc).__name__
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"ledger: {kind} error: {first} (run with --debug for details)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
