"""Run localstripe (a fake, stateful Stripe server) for end-to-end tests:
bound to 127.0.0.1 only, with its state file in a directory we choose (its CLI binds
every interface and writes /tmp/localstripe.pickle).

    python -m payments.tests.localstripe_server PORT STATE_DIR
"""

import os
import pickle
import sys


def main(port: int, state_dir: str) -> None:
    from aiohttp import web
    from localstripe import resources
    from localstripe.server import app

    state_file = os.path.join(state_dir, "localstripe.pickle")

    def dump_to_disk(store):
        with open(state_file, "wb") as f:
            pickle.dump(dict(store), f, protocol=pickle.HIGHEST_PROTOCOL)

    resources.Store.dump_to_disk = dump_to_disk
    web.run_app(app, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
