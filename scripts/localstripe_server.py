"""Start localstripe bound to loopback with no persistence (its own CLI binds all
interfaces and pickles state to a shared file under /tmp).

    python scripts/localstripe_server.py [--port 8420]
"""

import argparse
import logging

from aiohttp import web
from localstripe.resources import Store
from localstripe.server import app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # localstripe pickles its whole store to /tmp/localstripe.pickle on every write (the same file for
    # every localstripe on the machine), so each create costs more as the store grows: keep it in memory.
    Store.dump_to_disk = lambda self: None
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
