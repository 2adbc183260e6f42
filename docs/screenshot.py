"""Take docs/dashboard.png: serve the app on a free loopback port as the logged-in demo
staff user (`admin`, from `seed`), and have headless Chromium photograph the admin index.

    DATABASE_URL=... python docs/screenshot.py [--url '/admin/?period=30d'] [--out docs/dashboard.png]

Run `manage.py seed` and `manage.py demo_activity` on that database first. The server is
Django's WSGI app with the staff user's session cookie added to every request, since
Chromium's command line cannot log in.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="/admin/?period=30d")
    parser.add_argument("--out", default=str(ROOT / "docs" / "dashboard.png"))
    parser.add_argument("--size", default="1400,1000")
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.wsgi import get_wsgi_application

    user = get_user_model().objects.get(username="admin")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    app = get_wsgi_application()

    def logged_in(environ, start_response):
        environ["HTTP_COOKIE"] = f"{settings.SESSION_COOKIE_NAME}={session.session_key}"
        return app(environ, start_response)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = make_server("127.0.0.1", port, logged_in, handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(
                [
                    "chromium",
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--hide-scrollbars",
                    f"--user-data-dir={profile}",
                    f"--window-size={args.size}",
                    f"--screenshot={args.out}",
                    f"http://127.0.0.1:{port}{args.url}",
                ],
                check=True,
                timeout=120,
            )
    finally:
        server.shutdown()
        session.delete()
    print(args.out)


if __name__ == "__main__":
    main()
