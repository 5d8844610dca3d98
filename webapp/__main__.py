"""`python -m webapp [--host H] [--port P]`: serves the app (make run uses it)."""

import argparse
import logging

from . import create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m webapp", description="Serve the ledger's API and portal.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    create_app().run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
